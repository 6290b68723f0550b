"""mtlbench.store"""
