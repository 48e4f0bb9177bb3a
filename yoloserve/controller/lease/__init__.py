"""Leader election: ``base`` (the interface), ``store`` and ``kubernetes`` (its two
implementations), ``factory`` (the one place that picks one from the settings)."""
