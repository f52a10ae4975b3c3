"""The host profile: a real Kubernetes cluster on this machine, without Docker (issue #14).

Every binary is built from the Go module proxy at the versions in the [host] table of
harness/matrix.toml, into a cache keyed by the hash of its inputs; container images are written
locally from those binaries; the cluster runs as local processes in a network namespace of its own.
One module does one thing: ``versions`` (the [host] table, loaded and checked), ``recipes`` (how each
component is built: packages, cgo, tags, version-stamping ldflags as upstream's release scripts set
them), ``cache`` (entries, hashes, markers), ``toolchain`` (Go and the C compiler, one build command
with progress and a deadline), ``build`` (the build tool, ``python -m harness.host.build``),
``images`` (OCI image archives of the pause, CoreDNS and NetworkPolicy images, and the upstream ->
local image names in ``images.toml``), ``containerd`` (a private containerd for ``ctr`` runs),
``netns`` (the node's namespace: a veth to the host, no default route), ``pki`` (CAs, certificates
and kubeconfigs as kubeadm lays them out), ``cluster`` (etcd, the control plane, containerd with CRI
and a kubelet, started and stopped). ``gomod/<component>/`` holds the wrapper modules (go.mod,
go.sum, tools.go: our own files, no upstream source). Nothing here imports pytest.
"""
