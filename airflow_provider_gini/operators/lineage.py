"""OpenLineage facets for the pull operator. The ``openlineage`` extra
(apache-airflow-providers-openlineage) is optional, so everything it provides is imported
inside the functions: without it, nothing here is ever called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


@dataclass(frozen=True)
class PullLineage:
    """What a pull read and wrote, kept by the operator for the lineage listener. Plain values
    only: the API URL and the destination URI carry no credentials."""

    api_url: str
    destination: str
    window: str
    pulled: int | None = None


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) following the OpenLineage naming spec: ``file`` and the absolute path
    for local files, ``<scheme>://<authority>`` and the path for object stores (s3, gs, ...)."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", parts.path or uri
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"


def operator_lineage(facts: PullLineage) -> OperatorLineage[Any, Any]:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset, OutputDataset
    from openlineage.client.facet_v2 import documentation_dataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset as statistics

    api = urlsplit(facts.api_url)
    source = Dataset(
        namespace=f"{api.scheme}://{api.netloc}",
        name="documents",
        facets={
            "documentation": documentation_dataset.DocumentationDatasetFacet(
                description=f"Gini documents created in {facts.window}"
            )
        },
    )
    namespace, name = dataset_name(facts.destination)
    output_facets: dict[str, Any] = {}
    if facts.pulled is not None:
        stats = statistics.OutputStatisticsOutputDatasetFacet(rowCount=facts.pulled)
        output_facets["outputStatistics"] = stats
    target = OutputDataset(namespace=namespace, name=name, outputFacets=output_facets)
    return OperatorLineage(inputs=[source], outputs=[target])
