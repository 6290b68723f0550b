"""mtlbench.analysis: tables and figures from the results store.

* :mod:`~mtlbench.analysis.comparison` -- the Delta_m / mean-rank table printed by ``mtlbench demo``.
* :mod:`~mtlbench.analysis.data` -- the runs of one problem configuration and each method's final setting.
* :mod:`~mtlbench.analysis.analyses` -- the analyses (000 Tables 1-5, Figs. 1-9; 001 Fig. 3, Table 2; 003
  overhead), each also a ``mtlbench analysis <name>`` command.
* :mod:`~mtlbench.analysis.report` -- ``write_report``: all of them in one self-contained HTML page.
* :mod:`~mtlbench.analysis.stats`, :mod:`~mtlbench.analysis.pareto`, :mod:`~mtlbench.analysis.fixed_weights`,
  :mod:`~mtlbench.analysis.tables`, :mod:`~mtlbench.analysis.figures` -- the building blocks.
"""
