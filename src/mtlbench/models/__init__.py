"""mtlbench.models"""
