"""mtlbench.problems"""
