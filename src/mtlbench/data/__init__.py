"""mtlbench.data"""
