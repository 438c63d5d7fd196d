"""The lab's kubeadm stand-in is strict: what the product could get wrong makes it fail.

Run on real lab hosts without the product: cp1 is initialised with an endpoint address of its
own (10.250.0.100, standing in for a VIP), then joins go wrong on purpose.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.lab
LAB_HOSTS = ["cp1", "cp2", "w1"]
LAB_KUBERNETES = "standin"  # this module tests the stand-ins themselves; it goes with them
ENDPOINT = "10.250.0.100:6443"
CRI = "unix:///var/run/containerd/containerd.sock"
CA_HASH_COMMAND = ("openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der"
                   " | sha256sum | cut -d' ' -f1")


def init_config(extra_cluster_field: str = "") -> str:
    return f"""apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {{advertiseAddress: "10.250.0.21", bindPort: 6443}}
nodeRegistration: {{name: cp1, criSocket: "{CRI}"}}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.4
controlPlaneEndpoint: "{ENDPOINT}"
apiServer: {{certSANs: ["10.250.0.100", "api.lab.example"]}}
networking: {{serviceSubnet: 10.96.0.0/12}}
{extra_cluster_field}"""


def join_config(name: str, token: str, ca_hash: str, endpoint: str = ENDPOINT, certificate_key: str = "") -> str:
    control_plane = ""
    if certificate_key:
        control_plane = (f"controlPlane:\n  localAPIEndpoint: {{advertiseAddress: \"10.250.0.22\", bindPort: 6443}}\n"
                         f"  certificateKey: \"{certificate_key}\"\n")
    return f"""apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken: {{apiServerEndpoint: "{endpoint}", token: "{token}", caCertHashes: ["{ca_hash}"]}}
nodeRegistration: {{name: {name}, criSocket: "{CRI}"}}
{control_plane}"""


def kubeadm_with(host, subcommand: str, config: str):
    """Write config to a file on the host and run `kubeadm SUBCOMMAND --config FILE` with short waits."""
    host.run(f"cat > /root/kubeadm.yaml <<'EOF'\n{config}\nEOF")
    return host.run(f"KUBEADM_STANDIN_WAIT_SECONDS=3 kubeadm {subcommand} --config /root/kubeadm.yaml", check=False)


@pytest.fixture(scope="module")
def hosts(lab_hosts):
    for host in lab_hosts.values():
        host.run("systemctl enable --now containerd >/dev/null 2>&1; swapoff -a")
    lab_hosts["cp1"].run("ip address add 10.250.0.100/32 dev host0")
    return lab_hosts


@pytest.fixture
def reset_after(hosts):
    yield
    for name in ("cp2", "w1"):
        hosts[name].run("kubeadm reset -f >/dev/null")


@pytest.fixture(scope="module")
def cluster(hosts) -> dict[str, str]:
    """cp1 initialised; a fresh token and the CA hash."""
    result = kubeadm_with(hosts["cp1"], "init --upload-certs", init_config())
    assert result.returncode == 0, result.stderr
    token = hosts["cp1"].run("kubeadm token create --ttl 1h").stdout.strip()
    return {"token": token, "ca_hash": "sha256:" + hosts["cp1"].run(CA_HASH_COMMAND).stdout.strip()}


def test_join_before_init_fails(hosts):
    config = join_config("w1", "abcdef.0123456789abcdef", "sha256:" + "0" * 64)
    result = kubeadm_with(hosts["w1"], "join", config)
    assert result.returncode != 0
    assert "cluster-info" in result.stderr


def test_init_rejects_an_unknown_field(hosts):
    result = kubeadm_with(hosts["cp1"], "init", init_config("apiServerPort: 6443"))
    assert result.returncode != 0
    assert "apiServerPort: unknown field" in result.stderr


def test_init_makes_the_apiserver_certificate_with_exactly_kubeadms_sans(hosts, cluster):
    sans = hosts["cp1"].run("openssl x509 -noout -ext subjectAltName -in /etc/kubernetes/pki/apiserver.crt").stdout
    names = sorted(entry.strip() for entry in sans.splitlines()[-1].split(","))
    assert names == sorted([
        "DNS:cp1", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local", "DNS:api.lab.example",
        "IP Address:10.96.0.1", "IP Address:10.250.0.21", "IP Address:10.250.0.100"])


def test_init_writes_admin_conf_for_the_endpoint_and_serves_health(hosts, cluster):
    assert f"server: https://{ENDPOINT}" in hosts["cp1"].run("cat /etc/kubernetes/admin.conf").stdout
    assert hosts["cp1"].run("kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /livez").stdout.strip() == "ok"
    assert hosts["cp1"].run("systemctl is-enabled kube-apiserver-standin").stdout.strip() == "enabled"


def test_a_second_init_is_refused(hosts, cluster):
    result = kubeadm_with(hosts["cp1"], "init", init_config())
    assert result.returncode != 0
    assert "FileAvailable--etc-kubernetes-admin.conf" in result.stderr


def test_a_join_into_a_non_empty_manifests_folder_fails_unless_kubeadm_is_told(hosts, cluster, reset_after):
    """Static pods placed before kubeadm (static-pods, kube-vip) need ignorePreflightErrors, as with kubeadm."""
    hosts["w1"].run("install -d /etc/kubernetes/manifests && echo 'kind: Pod' > /etc/kubernetes/manifests/lb.yaml")
    config = join_config("w1", cluster["token"], cluster["ca_hash"])
    result = kubeadm_with(hosts["w1"], "join", config)
    assert result.returncode != 0
    assert "[ERROR DirAvailable--etc-kubernetes-manifests]" in result.stderr
    told = config.replace(f'criSocket: "{CRI}"}}', f'criSocket: "{CRI}", '
                          'ignorePreflightErrors: [DirAvailable--etc-kubernetes-manifests]}')
    assert told != config
    result = kubeadm_with(hosts["w1"], "join", told)
    assert result.returncode == 0, result.stderr


def test_a_wrong_ca_hash_fails_the_join(hosts, cluster, reset_after):
    result = kubeadm_with(hosts["w1"], "join", join_config("w1", cluster["token"], "sha256:" + "1" * 64))
    assert result.returncode != 0
    assert "none of the public keys" in result.stderr


def test_an_unknown_token_fails_the_join(hosts, cluster, reset_after):
    result = kubeadm_with(hosts["w1"], "join", join_config("w1", "zzzzzz.0123456789abcdef", cluster["ca_hash"]))
    assert result.returncode != 0
    assert 'token id "zzzzzz" is invalid' in result.stderr


def test_a_join_that_bypasses_the_endpoint_fails(hosts, cluster, reset_after):
    config = join_config("w1", cluster["token"], cluster["ca_hash"], endpoint="10.250.0.21:6443")
    result = kubeadm_with(hosts["w1"], "join", config)
    assert result.returncode != 0
    assert "bypasses the control-plane endpoint" in result.stderr


def upload_certs(host, key: str) -> None:
    """As kubeadm wants it: the certificate key in the InitConfiguration, not beside --config."""
    host.run(f"sed 's/^kind: InitConfiguration$/&\\ncertificateKey: \"{key}\"/' /root/kubeadm.yaml > /root/upload.yaml"
             " && kubeadm init phase upload-certs --upload-certs --config /root/upload.yaml >/dev/null")


def test_upload_certs_refuses_a_certificate_key_flag_beside_the_config(hosts, cluster):
    result = hosts["cp1"].run("kubeadm init phase upload-certs --upload-certs --certificate-key " + "a" * 64
                              + " --config /root/kubeadm.yaml", check=False)
    assert result.returncode != 0
    assert "can not mix '--config' with arguments [certificate-key]" in result.stderr


def test_a_control_plane_join_with_a_wrong_certificate_key_fails(hosts, cluster, reset_after):
    upload_certs(hosts["cp1"], "a" * 64)
    config = join_config("cp2", cluster["token"], cluster["ca_hash"], certificate_key="b" * 64)
    result = kubeadm_with(hosts["cp2"], "join", config)
    assert result.returncode != 0
    assert "message authentication failed" in result.stderr


def test_a_control_plane_join_with_the_right_key_starts_its_apiserver(hosts, cluster, reset_after):
    key = hosts["cp1"].run("kubeadm certs certificate-key").stdout.strip()
    upload_certs(hosts["cp1"], key)
    result = kubeadm_with(hosts["cp2"], "join", join_config("cp2", cluster["token"], cluster["ca_hash"],
                                                           certificate_key=key))
    assert result.returncode == 0, result.stderr
    assert hosts["cp2"].run("curl -fsS --cacert /etc/kubernetes/pki/ca.crt https://10.250.0.22:6443/readyz").stdout == "ok"
    members = hosts["cp1"].run("kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system exec etcd-cp1 -- "
                               "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
                               "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
                               "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key member list").stdout
    assert ", cp2, " in members


def test_a_worker_join_then_reset_leaves_no_state(hosts, cluster):
    result = kubeadm_with(hosts["w1"], "join", join_config("w1", cluster["token"], cluster["ca_hash"]))
    assert result.returncode == 0, result.stderr
    assert f"server: https://{ENDPOINT}" in hosts["w1"].run("cat /etc/kubernetes/kubelet.conf").stdout
    hosts["w1"].run("kubeadm reset -f")
    assert hosts["w1"].run("ls /etc/kubernetes/ 2>/dev/null || true").stdout.strip() == ""
    assert "kubeadm join --config /root/kubeadm.yaml" in hosts["w1"].run("cat /var/log/kubeha-standins.log").stdout


KUBE_VIP_POD = """apiVersion: v1
kind: Pod
metadata: {name: kube-vip, namespace: kube-system}
spec:
  hostNetwork: true
  containers:
  - name: kube-vip
    image: ghcr.io/kube-vip/kube-vip:v0.8.9
    env:
    - {name: address, value: "10.250.0.101"}
    - {name: vip_interface, value: host0}
    volumeMounts:
    - {name: kubeconfig, mountPath: /etc/kubernetes/admin.conf}
  volumes:
  - name: kubeconfig
    hostPath: {path: /etc/kubernetes/admin.conf, type: File}
"""


def test_init_with_kube_vip_on_admin_conf_fails_like_the_real_bootstrap_problem(hosts, reset_after):
    hosts["cp2"].run(f"install -d /etc/kubernetes/manifests && cat > /etc/kubernetes/manifests/kube-vip.yaml <<'EOF'\n"
                     f"{KUBE_VIP_POD}EOF")
    config = (init_config().replace("10.250.0.21", "10.250.0.22").replace("name: cp1", "name: cp2")
              .replace(f'criSocket: "{CRI}"}}', f'criSocket: "{CRI}", '
                       'ignorePreflightErrors: [DirAvailable--etc-kubernetes-manifests]}'))
    result = kubeadm_with(hosts["cp2"], "init", config)
    assert result.returncode != 0
    assert "Mount super-admin.conf during init" in result.stderr
    assert not hosts["cp2"].holds("10.250.0.101")
