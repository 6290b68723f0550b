"""mtlbench.training"""
