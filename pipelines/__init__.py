"""Apache Beam pipelines: the only layer that imports apache_beam."""
