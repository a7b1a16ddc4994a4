"""Apache Airflow provider for Gini's document-processing APIs."""

__version__ = "0.1.0"
