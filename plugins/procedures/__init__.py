"""The built-in suite procedures, one package per study: each holds its plan, report and plots
beside the ``@hookimpl`` that registers it (each package is an entry point of the ``bench``
group, exactly as a third-party study would be)."""
