# kubeha — see README.md. `make setup test` sets up this machine and runs the tests.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
# Caches live outside the clone so later runs (and CI on the same machine) reuse them.
CACHE_DIR ?= /var/cache/kubeha
ENGINE_DIR ?= $(CACHE_DIR)/engine
APT_PACKAGES := haproxy keepalived nginx libnginx-mod-stream nftables openssl util-linux curl openssh-client
LAB_APT_PACKAGES := systemd-container debootstrap iproute2 openssh-client apt-utils gnupg dpkg-dev
STACK ?= dev
STATE_DIR := $(CURDIR)/build/state
# Upstream source snapshots of what the Go module proxy does not serve (tools/check-vendor.sh).
VENDOR_DIR ?= $(abspath $(CURDIR)/../shared/vendor)
export VENDOR_DIR

.PHONY: setup test preview engine venv vendor-check lab-setup lab-kubernetes conformance-build lab-up lab-test lab-down conformance bench-failover bench-restore bench-upgrade clean

setup:  ## Install the Debian and Python packages the tests need; build kubeadm (its `config validate` checks every rendered config).
	tools/apt-install.sh $(APT_PACKAGES)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r requirements-dev.txt
	CACHE_DIR=$(CACHE_DIR) tests/lab/kubernetes/build.sh kubeadm

test:  ## Unit tests under Pulumi mocks and real validators of every rendered file.
	$(PYTHON) -m pytest -m "not lab"

lab-setup:  ## Debian packages the lab needs (systemd-nspawn, debootstrap).
	tools/apt-install.sh $(LAB_APT_PACKAGES)

# Real Kubernetes for the lab, built from the Go module proxy into the cache (tests/lab/kubernetes).
# The lab runs LAB_RELEASE; the upgrade test builds a cluster at UPGRADE_FROM_VERSION (its
# Kubernetes binaries and control-plane images only) and upgrades it. (`LAB_KUBERNETES_VERSION=1.34.3
# make lab-up` builds the lab stack at that release.)
LAB_RELEASE := 1.34.4
UPGRADE_FROM_VERSION := 1.34.3
vendor-check:  ## Every upstream snapshot a build still needs is in VENDOR_DIR (default ../shared/vendor).
	CACHE_DIR=$(CACHE_DIR) ENGINE_DIR=$(ENGINE_DIR) tools/check-vendor.sh

lab-kubernetes: lab-setup vendor-check  ## Build kubeadm, kubelet, kubectl, the control-plane binaries, etcd, CoreDNS; their images; the signed package repository.
	CACHE_DIR=$(CACHE_DIR) tests/lab/kubernetes/build.sh
	CACHE_DIR=$(CACHE_DIR) KUBERNETES_VERSION=$(UPGRADE_FROM_VERSION) tests/lab/kubernetes/build.sh \
	    kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy
	CACHE_DIR=$(CACHE_DIR) tests/lab/build-image.sh
	$(PYTHON) tests/lab/kubernetes/images.py $(CACHE_DIR)/kubernetes/v$(LAB_RELEASE) $(CACHE_DIR)/lab/image-bookworm
	$(PYTHON) tests/lab/kubernetes/images.py $(CACHE_DIR)/kubernetes/v$(UPGRADE_FROM_VERSION) $(CACHE_DIR)/lab/image-bookworm \
	    --components-only
	CACHE_DIR=$(CACHE_DIR) KUBERNETES_VERSIONS="$(UPGRADE_FROM_VERSION) $(LAB_RELEASE)" tests/lab/kubernetes/packages.sh

conformance-build: lab-kubernetes  ## The lab release's conformance suite (e2e.test, ginkgo) and the images its tests run, made here (tests/lab/conformance).
	CACHE_DIR=$(CACHE_DIR) tests/lab/conformance/build.sh

LABS ?=
lab-test: lab-setup lab-kubernetes venv  ## Real scripts on real Debian hosts (systemd-nspawn); needs root. One cluster per topology, shared by the modules, in two labs side by side (tests/lab/clusters.py, tests/lab/run.py; LABS=1: lab 1's alone); ends with a table of the time per module and topology; tears the labs down.
	LABS="$(LABS)" $(PYTHON) -m tests.lab.run

# The lab stack's settings: LB_MODE (keepalived-haproxy, static-pods, kube-vip, local-nginx), or
# TOPOLOGY, one of the lab tests' topologies (tests/lab/clusters.py) exactly as they build it:
# `make lab-up TOPOLOGY=ha` is the cluster `make lab-test` then takes over instead of building it.
LB_MODE ?= keepalived-haproxy
TOPOLOGY ?=
lab-up: lab-setup lab-kubernetes venv  ## Boot the lab hosts and `pulumi up` the lab stack on them (LB_MODE=... or TOPOLOGY=...); then `source build/lab/env`.
	KUBEHA_ROOT=$(CURDIR) ENGINE_DIR=$(ENGINE_DIR) LAB_LB_MODE=$(LB_MODE) LAB_TOPOLOGY=$(TOPOLOGY) tests/lab/lab-stack.sh up || {
	    echo "make lab-up failed: tearing the lab down (KEEP_LAB=1 keeps it for a look)" >&2
	    [ -n "$(KEEP_LAB)" ] || $(MAKE) lab-down
	    exit 1
	}

lab-down:  ## `pulumi destroy` the lab stack if its hosts run; always stop them, remove bridge and route.
	KUBEHA_ROOT=$(CURDIR) ENGINE_DIR=$(ENGINE_DIR) tests/lab/lab-stack.sh destroy
	tests/lab/lab.sh down

FOCUS ?=
SKIP ?=
PROCS ?= 4
SMOKE ?=
conformance: conformance-build  ## The conformance suite's [Conformance] tests on the `make lab-up` cluster (FOCUS=, SKIP= regexes narrow it; PROCS= parallel processes; SMOKE=1: the 20-test smoke subset): JUnit, logs and summary in build/conformance/.
	$(PYTHON) -m tests.lab.conformance.run --focus '$(FOCUS)' --skip '$(SKIP)' --procs $(PROCS) $(if $(SMOKE),--smoke)

RUNS ?= 3
CONFIGS ?= product,ha-guide
bench-failover: lab-setup lab-kubernetes venv  ## Failover benchmark, product vs kubeadm HA guide LB config (needs root): table, build/bench/failover.json and *.png (KEEP_LAB=1: leave the cluster running; CONFIGS=product: the product's only).
	$(PYTHON) -m tests.lab.bench.failover --runs $(RUNS) --configs $(CONFIGS) $(if $(KEEP_LAB),--keep-lab)

bench-restore: lab-setup lab-kubernetes venv  ## Restore benchmark (needs root): static-pods cluster loses etcd's quorum, then every control plane; both etcd.restores under a 20 Hz probe; table, build/bench/restore.json and restore-timeline.png.
	$(PYTHON) -m tests.lab.bench.restore

bench-upgrade: lab-setup lab-kubernetes venv  ## Upgrade benchmark (needs root): 1.34.3 -> 1.34.4 under a 20 Hz probe; table, build/bench/upgrade.json and upgrade-timeline.png.
	$(PYTHON) -m tests.lab.bench.upgrade

# The program runs in ./venv, as Pulumi.yaml says; `pulumi install` makes it from requirements.txt.
venv:  ## `pulumi install`: ./venv with requirements.txt (and the plugins the SDKs name); builds the engine first where no pulumi CLI is on PATH.
	command -v pulumi >/dev/null 2>&1 || $(MAKE) engine
	ENGINE_DIR=$(ENGINE_DIR) STATE_DIR=$(STATE_DIR); source tools/engine/env.sh
	pulumi install

engine: vendor-check  ## Build the pulumi CLI from Go modules into $(ENGINE_DIR) (see tools/engine/build.sh).
	ENGINE_DIR=$(ENGINE_DIR) CACHE_DIR=$(CACHE_DIR) tools/engine/build.sh

preview: venv  ## `pulumi preview --diff` on the documentation-only dev stack (local state, nothing deployed).
	mkdir -p build/dev $(STATE_DIR)
	[ -f build/dev/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -C kubeha-dev-preview -f build/dev/id_ed25519
	KUBEHA_ROOT=$(CURDIR) ENGINE_DIR=$(ENGINE_DIR) STATE_DIR=$(STATE_DIR); source tools/engine/env.sh
	pulumi stack select --create organization/kubeha/$(STACK) >/dev/null
	pulumi preview --diff --stack organization/kubeha/$(STACK)

clean:
	rm -rf build .pytest_cache
