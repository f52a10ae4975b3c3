"""The local stack's services, each its real program on a loopback port: MLflow's tracking server
(``tracking``), an S3-compatible artifact store (``s3``, moto's server) and Prometheus
(``prometheus``)."""
