"""How each host-cluster component is built: the Go packages, flags and version stamps of its
upstream release build, as data.

A ``Recipe`` is one cache entry: one upstream module at one version, built by one or more
``GoStep``s (one ``go build`` each) inside its wrapper module (harness/host/gomod/<wrapper>/), or by
a ``CcStep`` (the pause container's C program). Flags follow each project's own release scripts,
read at the tag (named in ``upstream``); where they stamp a commit or a date, the value comes from
the [host] table of harness/matrix.toml, so the build is reproducible and the binary reports what
the release binary reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.host.versions import HostVersions

__all__ = ["ALIASES", "DEFAULT_COMPONENTS", "CcStep", "GoStep", "Recipe", "recipes"]


@dataclass(frozen=True)
class GoStep:
    """One ``go build``: packages -> binaries (same order), with its environment and flags."""

    packages: tuple[str, ...]
    outputs: tuple[str, ...]
    cgo: bool = False
    tags: tuple[str, ...] = ()
    ldflags: str = ""
    extra: tuple[str, ...] = ()  # more `go build` flags (-buildmode=pie)

    def key(self) -> dict:
        return {"packages": list(self.packages), "outputs": list(self.outputs), "cgo": self.cgo,
                "tags": list(self.tags), "ldflags": self.ldflags, "extra": list(self.extra)}


@dataclass(frozen=True)
class CcStep:
    """One C program compiled from a file inside a Go module (the module cache has its source)."""

    module: str  # module@version that holds the source
    source: str  # path inside the module
    output: str
    cflags: tuple[str, ...]

    def key(self) -> dict:
        return {"module": self.module, "source": self.source, "output": self.output, "cflags": list(self.cflags)}


@dataclass(frozen=True)
class Recipe:
    name: str
    module: str  # the upstream module path
    version: str  # its tag (v...)
    wrapper: str  # folder under harness/host/gomod ("" for a C build)
    steps: tuple[GoStep | CcStep, ...]
    upstream: str  # which upstream file the flags come from, in one line
    needs_headers: tuple[tuple[str, str], ...] = ()  # (header, Debian package) a cgo step includes
    default: bool = True  # built by `python -m harness.host.build` with no component named
    binaries: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names: list[str] = []
        for step in self.steps:
            names.extend(step.outputs if isinstance(step, GoStep) else (step.output,))
        object.__setattr__(self, "binaries", tuple(names))


def _x(symbols: dict[str, str]) -> str:
    return " ".join(f"-X {k}={v}" for k, v in symbols.items())


def recipes(versions: HostVersions) -> dict[str, Recipe]:
    """Every component's recipe for the versions in the [host] table."""
    out: dict[str, Recipe] = {}

    k8s = versions.component("kubernetes")
    major, minor = k8s.version.split(".")[:2]
    # hack/lib/version.sh (kube::version::ldflags) stamps each key into both version packages;
    # hack/lib/golang.sh adds -s -w and -trimpath for non-debug builds and the tags selinux,notest.
    # version.sh adds gitCommit and gitTreeState only together, when the commit is known.
    stamp = {"buildDate": k8s.date, "gitVersion": k8s.tag, "gitMajor": major, "gitMinor": minor}
    if k8s.commit:
        stamp.update(gitCommit=k8s.commit, gitTreeState="clean")
    k8s_ld = "-s -w " + _x({f"{pkg}.{key}": val for key, val in stamp.items()
                            for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")})
    static = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl")
    out["kubernetes"] = Recipe(
        name="kubernetes", module="k8s.io/kubernetes", version=k8s.tag, wrapper="kubernetes",
        steps=(GoStep(packages=tuple(f"k8s.io/kubernetes/cmd/{b}" for b in static), outputs=static,
                      cgo=False, tags=("selinux", "notest"), ldflags=k8s_ld),),
        upstream=f"hack/lib/golang.sh@{k8s.tag}: KUBE_STATIC_BINARIES with CGO_ENABLED=0; version.sh ldflags")
    kubelet = versions.component("kubelet")
    out["kubelet"] = Recipe(
        name="kubelet", module="k8s.io/kubernetes", version=kubelet.tag, wrapper="kubernetes",
        steps=(GoStep(packages=("k8s.io/kubernetes/cmd/kubelet",), outputs=("kubelet",), cgo=True,
                      tags=("selinux", "notest"), ldflags=k8s_ld),),
        upstream=f"hack/lib/golang.sh@{kubelet.tag}: kubelet is not in KUBE_STATIC_BINARIES, so cgo is on")

    etcd = versions.component("etcd")
    # scripts/build_lib.sh: CGO_ENABLED=0, -trimpath, -X go.etcd.io/etcd/api/v3/version.GitSHA=<short sha>.
    out["etcd"] = Recipe(
        name="etcd", module="go.etcd.io/etcd/server/v3", version=etcd.tag, wrapper="etcd",
        steps=(GoStep(packages=("go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3"),
                      outputs=("etcd", "etcdctl"),
                      ldflags=_x({"go.etcd.io/etcd/api/v3/version.GitSHA": etcd.commit[:7]})),),
        upstream=f"scripts/build_lib.sh@{etcd.tag}")

    ctd = versions.component("containerd")
    # Makefile + Makefile.linux: -s -w, tags urfave_cli_no_docs, -buildmode=pie; the daemon and ctr
    # with cgo, the shim with SHIM_CGO_ENABLED=0 and -extldflags -static.
    ctd_ld = "-s -w " + _x({"github.com/containerd/containerd/version.Version": ctd.tag,
                            "github.com/containerd/containerd/version.Revision": ctd.commit,
                            "github.com/containerd/containerd/version.Package": "github.com/containerd/containerd"})
    out["containerd"] = Recipe(
        name="containerd", module="github.com/containerd/containerd", version=ctd.tag, wrapper="containerd",
        steps=(GoStep(packages=("github.com/containerd/containerd/cmd/containerd",
                                "github.com/containerd/containerd/cmd/ctr"),
                      outputs=("containerd", "ctr"), cgo=True, tags=("urfave_cli_no_docs",), ldflags=ctd_ld,
                      extra=("-buildmode=pie",)),
               GoStep(packages=("github.com/containerd/containerd/cmd/containerd-shim-runc-v2",),
                      outputs=("containerd-shim-runc-v2",), cgo=False, tags=("urfave_cli_no_docs",),
                      ldflags=ctd_ld + " -extldflags -static")),
        upstream=f"Makefile, Makefile.linux@{ctd.tag}")

    runc = versions.component("runc")
    # Makefile: go build -trimpath -buildmode=pie -tags seccomp with cgo (nsenter is C);
    # main.gitCommit is `git describe --dirty --long --always` at the tag.
    out["runc"] = Recipe(
        name="runc", module="github.com/opencontainers/runc", version=runc.tag, wrapper="runc",
        steps=(GoStep(packages=("github.com/opencontainers/runc",), outputs=("runc",), cgo=True, tags=("seccomp",),
                      ldflags=_x({"main.gitCommit": f"{runc.tag}-0-g{runc.commit[:7]}", "main.version": runc.version}),
                      extra=("-buildmode=pie",)),),
        upstream=f"Makefile@{runc.tag} (the dynamic `make runc`; releases link libseccomp statically)",
        needs_headers=(("seccomp.h", "libseccomp-dev"),))

    cni = versions.component("cni-plugins")
    # scripts/release.sh: CGO_ENABLED=0 build_linux.sh -ldflags '-extldflags -static -X ...BuildVersion=<tag>'.
    plugins = {"bridge": "main", "loopback": "main", "host-local": "ipam", "portmap": "meta"}
    out["cni-plugins"] = Recipe(
        name="cni-plugins", module="github.com/containernetworking/plugins", version=cni.tag, wrapper="cni-plugins",
        steps=(GoStep(packages=tuple(f"github.com/containernetworking/plugins/plugins/{kind}/{p}"
                                     for p, kind in plugins.items()),
                      outputs=tuple(plugins),
                      ldflags="-extldflags -static " + _x(
                          {"github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion": cni.tag})),),
        upstream=f"scripts/release.sh, build_linux.sh@{cni.tag}")

    dns = versions.component("coredns")
    # Makefile: CGO_ENABLED=0 go build -ldflags="-s -w -X .../coremain.GitCommit=<commit>".
    out["coredns"] = Recipe(
        name="coredns", module="github.com/coredns/coredns", version=dns.tag, wrapper="coredns",
        steps=(GoStep(packages=("github.com/coredns/coredns",), outputs=("coredns",),
                      ldflags="-s -w " + _x({"github.com/coredns/coredns/coremain.GitCommit": dns.commit[:7]})),),
        upstream=f"Makefile@{dns.tag}")

    knp = versions.component("kube-network-policies")
    # Dockerfile: CGO_ENABLED=0 go build -o /go/bin/netpol ./cmd (no ldflags).
    out["kube-network-policies"] = Recipe(
        name="kube-network-policies", module="sigs.k8s.io/kube-network-policies", version=knp.tag,
        wrapper="kube-network-policies",
        steps=(GoStep(packages=("sigs.k8s.io/kube-network-policies/cmd",), outputs=("netpol",)),),
        # Only where the kernel has nftables' queue expression (kind's enforcer): built when named.
        upstream=f"Dockerfile@{knp.tag}", default=False)

    krt = versions.component("kube-router")
    # Makefile (kube-router target): CGO_ENABLED=0 go build -ldflags "-X .../pkg/version.Version=$(git describe
    # --tags --dirty) -X .../pkg/version.BuildDate=$(date +%Y-%m-%dT%H:%M:%S%z)"; the date is the tag's, fixed.
    krt_date = krt.date.replace("Z", "+0000")
    out["kube-router"] = Recipe(
        name="kube-router", module="github.com/cloudnativelabs/kube-router/v2", version=krt.tag, wrapper="kube-router",
        steps=(GoStep(packages=("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",), outputs=("kube-router",),
                      ldflags=_x({"github.com/cloudnativelabs/kube-router/v2/pkg/version.Version": krt.tag,
                                  "github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate": krt_date})),),
        upstream=f"Makefile@{krt.tag} (kube-router target)")

    prom = versions.component("prometheus")
    # .promu.yml: tags netgo,builtinassets,stringlabels and -X github.com/prometheus/common/version.* stamps.
    # builtinassets embeds the React UI, which `make assets` builds with npm and no module zip holds: without
    # the tag the binary is the same server (API, scraping, rules) whose web UI pages answer 404.
    prom_date = prom.date.replace("-", "").replace("T", "-").rstrip("Z")  # promu's "20060102-15:04:05"
    out["prometheus"] = Recipe(
        name="prometheus", module="github.com/prometheus/prometheus", version=f"v0.{prom.version.split('.', 1)[1]}",
        wrapper="prometheus",
        steps=(GoStep(packages=("github.com/prometheus/prometheus/cmd/prometheus",), outputs=("prometheus",),
                      tags=("netgo", "stringlabels"),
                      ldflags=_x({"github.com/prometheus/common/version.Version": prom.version,
                                  "github.com/prometheus/common/version.Branch": "HEAD",
                                  "github.com/prometheus/common/version.BuildUser": "seamcheck@host-build",
                                  "github.com/prometheus/common/version.BuildDate": prom_date})),),
        upstream=f".promu.yml@v{prom.version} (tags netgo,stringlabels; builtinassets left out: no UI assets)")

    pause = versions.component("pause")
    # build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV), then strip;
    # REV is `git describe --contains` of the tree, here the kubernetes tag it is taken from.
    out["pause"] = Recipe(
        name="pause", module="k8s.io/kubernetes", version=k8s.tag, wrapper="",
        steps=(CcStep(module=f"k8s.io/kubernetes@{k8s.tag}", source="build/pause/linux/pause.c", output="pause",
                      cflags=("-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{pause.version}-{k8s.tag}")),),
        upstream=f"build/pause/Makefile@{k8s.tag}")

    crictl = versions.component("crictl")
    out["crictl"] = Recipe(
        name="crictl", module="sigs.k8s.io/cri-tools", version=crictl.tag, wrapper="crictl",
        steps=(GoStep(packages=("sigs.k8s.io/cri-tools/cmd/crictl",), outputs=("crictl",),
                      ldflags=_x({"sigs.k8s.io/cri-tools/pkg/version.Version": crictl.version})),),
        upstream=f"Makefile@{crictl.tag}: CGO_ENABLED=0, -trimpath, pkg/version.Version", default=False)
    return out


#: Component names in build order (cheap first, so a broken toolchain shows before the long one).
DEFAULT_COMPONENTS = ("pause", "cni-plugins", "runc", "kube-network-policies", "coredns", "etcd", "containerd",
                      "kubernetes", "kubelet", "kube-router", "prometheus")

#: A binary's name also names its component on the command line.
ALIASES = {
    "kube-apiserver": "kubernetes", "kube-controller-manager": "kubernetes", "kube-scheduler": "kubernetes",
    "kube-proxy": "kubernetes", "kubectl": "kubernetes", "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd", "etcdctl": "etcd", "bridge": "cni-plugins",
    "host-local": "cni-plugins", "loopback": "cni-plugins", "portmap": "cni-plugins", "netpol": "kube-network-policies",
}
