"""A typed Python client of kubetune's resources for notebooks and pipelines, on a cluster or locally.

    from kubetune.client import Client
    kt = Client.cluster()      # or Client.local("runs")
    job, = kt.apply("job.yaml")
    kt.wait(job)

One interface (`Client`) over two back ends (`kubetune.client.backend.Backend`): `ClusterBackend`
(kubetune.k8s against the API server) and `LocalBackend` (`kubetune run`'s runs folder).
"""

from kubetune.client.backend import AdmissionError, Backend, Event, NotFoundError
from kubetune.client.facade import SETTLED, Client, WaitTimeout

__all__ = ["SETTLED", "AdmissionError", "Backend", "Client", "Event", "NotFoundError", "WaitTimeout"]
