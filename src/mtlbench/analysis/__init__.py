"""mtlbench.analysis"""
