"""mtlbench.cli"""
