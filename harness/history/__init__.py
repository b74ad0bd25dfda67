"""Performance history across commits: a store of result sets by commit
(:mod:`~harness.history.archive`), change points found in each series
(:mod:`~harness.history.detect`, :mod:`~harness.history.changepoints`) and an offline dashboard
(:mod:`~harness.history.dashboard`)."""
