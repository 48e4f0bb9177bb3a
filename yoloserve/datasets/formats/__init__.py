"""One reader per source format behind ``base.DatasetReader``; ``factory`` picks one by name."""
