"""What runs the export: one module per runtime over ``base.Runtime``, chosen by ``factory``."""
