"""The host cluster's certificates and kubeconfigs, made with the ``cryptography`` package the way
kubeadm lays them out (cmd/kubeadm/app/phases/certs and kubeconfig at v1.30.14).

One cluster CA signs the apiserver's serving certificate (SANs: the kubernetes service names, the
service CIDR's first address, the advertise address, 127.0.0.1 and localhost), its kubelet client
certificate, and one client certificate per kubeconfig (admin in system:masters as kubeadm's
super-admin.conf, kube-controller-manager, kube-scheduler, and the node's kubelet in system:nodes).
A second CA signs the front-proxy client (the aggregation layer), and an RSA key pair signs and
checks service-account tokens. Keys are RSA 2048 (kubeadm's default), certificates last a year,
CAs ten years, as kubeadm's.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki", "write_kubeconfig"]

_YEAR = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    """Paths of everything ``make_pki`` wrote (PEM files)."""

    dir: Path

    def __getattr__(self, name: str) -> Path:  # pki.ca_crt -> <dir>/ca.crt, pki.sa_key -> <dir>/sa.key
        if name.startswith("_"):
            raise AttributeError(name)
        stem, _, ext = name.rpartition("_")
        return self.dir / f"{stem.replace('_', '-')}.{ext}"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(dir_: Path, stem: str, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
    (dir_ / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                                         serialization.NoEncryption()))
    (dir_ / f"{stem}.key").chmod(0o600)
    (dir_ / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(cn: str, now: dt.datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + 10 * _YEAR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True,
                                         content_commitment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca: tuple[rsa.RSAPrivateKey, x509.Certificate], cn: str, now: dt.datetime, *, orgs: tuple[str, ...] = (),
          server: bool = False, client: bool = False, dns: tuple[str, ...] = (),
          ips: tuple[str, ...] = ()) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    usages = [u for u, on in ((ExtendedKeyUsageOID.SERVER_AUTH, server), (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if on]
    builder = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(ca[1].subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _YEAR)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                            content_commitment=False, data_encipherment=False, key_agreement=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[0].public_key()), critical=False))
    if dns or ips:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [*(x509.DNSName(d) for d in dns), *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]), critical=False)
    return key, builder.sign(ca[0], hashes.SHA256())


def make_pki(dir_: Path, *, advertise: str, service_ip: str, node: str, cluster_domain: str = "cluster.local",
             more_nodes: tuple[str, ...] = ()) -> Pki:
    """Write the CAs, certificates and the service-account key pair into ``dir_``; each of
    ``more_nodes`` gets its kubelet's certificate as ``kubelet-<node>``."""
    dir_.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca = _ca("kubernetes", now)
    _write(dir_, "ca", *ca)
    names = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{cluster_domain}",
             "localhost", node)
    _write(dir_, "apiserver", *_leaf(ca, "kube-apiserver", now, server=True, dns=names,
                                     ips=(service_ip, advertise, "127.0.0.1")))
    _write(dir_, "apiserver-kubelet-client",
           *_leaf(ca, "kube-apiserver-kubelet-client", now, orgs=("system:masters",), client=True))
    front = _ca("front-proxy-ca", now)
    _write(dir_, "front-proxy-ca", *front)
    _write(dir_, "front-proxy-client", *_leaf(front, "front-proxy-client", now, client=True))
    for stem, cn, orgs in (("admin", "kubernetes-super-admin", ("system:masters",)),
                           ("controller-manager", "system:kube-controller-manager", ()),
                           ("scheduler", "system:kube-scheduler", ()),
                           ("kube-proxy", "system:kube-proxy", ()),  # bound to system:node-proxier by default
                           ("kube-router", "system:kube-router", ()),  # bound by harness/host/netpol.py
                           ("kubelet", f"system:node:{node}", ("system:nodes",)),
                           *((f"kubelet-{n}", f"system:node:{n}", ("system:nodes",)) for n in more_nodes)):
        _write(dir_, stem, *_leaf(ca, cn, now, orgs=orgs, client=True))
    sa = _key()
    (dir_ / "sa.key").write_bytes(sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    (dir_ / "sa.key").chmod(0o600)
    (dir_ / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return Pki(dir_)


def write_kubeconfig(path: Path, *, pki: Pki, user: str, server: str, cluster: str = "seamcheck-host") -> Path:
    """A kubeconfig with embedded certificates (as kubeadm writes admin.conf and friends)."""
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": f"{user}@{cluster}",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_crt)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(pki.dir / f"{user}.crt"),
                                          "client-key-data": b64(pki.dir / f"{user}.key")}}],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
