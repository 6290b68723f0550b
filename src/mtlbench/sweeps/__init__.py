"""mtlbench.sweeps"""
