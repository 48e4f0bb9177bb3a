# The operator's verbs. `make demo` and `make test` set up whatever is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.setup-done
SYSSTAMP := .run/.system-deps-done
WEIGHTS ?= models/default/best.pt
# What the handler runs: auto (the fastest runtime that passes its gate on this machine, timed at
# package time), onnx, openvino, torchscript, onnx-int8, openvino-int8 (docs/runtimes.md)
RUNTIME ?= auto
VERSION ?=
ARGS ?=
PYTEST_ARGS ?=

export YOLO_OFFLINE := 1
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup system-deps container-engine demo stop status test lint bench train package redeploy rollback \
        ref-data import-dataset export-dataset mlflow-sync scenario labelstudio images local-base up down compose-config k8s-manifests pipeline clean

help: ## List the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# --- setup -----------------------------------------------------------------------------------
# torch and torchvision are installed first, as an exact matching pair: a bare `torch` or a range
# pulls a multi-GB CUDA build from the index, and PyPI's torchvision 0.28 does not import beside
# the local CPU torch 2.13 (see README, "Why torch 2.14.1").
$(STAMP): pyproject.toml
	@command -v python3.11 >/dev/null || command -v python3 >/dev/null
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -q -e ".[ml,mlflow,gateway,webapp,reporting,stack,k8s,pipelines,containers,dev]"
	$(PY) -c "from ultralytics import YOLO; import torchvision, ts, model_archiver, evidently, streamlit, streamlit_image_annotation, supervisor, kubernetes_validate, kfp, podman_compose, mlflow"
	touch $@

# System packages the tests and the demo need: Java 11+ for TorchServe (a java on PATH that is
# older does not count), Debian's Chromium at /usr/bin/chromium for the browser tests (the path
# they launch; another chromium on PATH does not count), docker-compose (v1, parser only) to
# validate docker-compose.yml, kubectl (Debian's kubernetes-client: 1.20, kustomize v2.0.3, or
# any newer one on PATH) to render deploy/kubernetes, Prometheus (+ promtool)
# for the demo and the alert-rule tests, PostgreSQL's server binaries (Debian's postgresql: initdb
# and postgres under /usr/lib/postgresql/*/bin, not on PATH) for the throwaway servers the store
# tests start (devstack/postgres.py), and podman (+ runc, debootstrap) for the container test
# and `make up` wherever no Docker engine *answers* (scripts/container_engine.py: the one rule,
# which scripts.containers and the container test use too; a docker client alone is no engine).
$(SYSSTAMP):
	@mkdir -p .run
	@missing=""; \
	java -version 2>&1 | grep -Eq 'version "(1[1-9]|[2-9][0-9])' || missing="$$missing openjdk-17-jre-headless"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	missing="$$missing $$(python3 scripts/container_engine.py packages)"; \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	touch $@

setup: $(STAMP) $(SYSSTAMP) ## Create the venv and install everything (idempotent)

container-engine: ## Print the container engine make up uses, and what setup installs for it
	@echo "engine=$$(python3 scripts/container_engine.py)"
	@for pkg in $$(python3 scripts/container_engine.py packages); do echo "missing=$$pkg"; done

system-deps: $(SYSSTAMP)

# --- run locally -----------------------------------------------------------------------------
demo: setup ## Start TorchServe, gateway, web app, Evidently UI under supervisord; print the URLs
	$(PY) -m scripts.stack up

stop: ## Stop everything `make demo` started
	@test -x $(PY) && $(PY) -m scripts.stack down || true

status: ## Show what is running (supervisord's view, served versions)
	$(PY) -m scripts.stack status

# --- tests -----------------------------------------------------------------------------------
test: setup ## Run the whole test suite (real TorchServe and Chromium included)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff + mypy
	$(PY) -m ruff check .
	$(PY) -m mypy yoloserve gateway gateway_client webapp reporting scripts devstack benchmarks

import-dataset: setup ## Import a labelled dataset: SRC=... FORMAT=yolo|coco|voc|labelstudio|cvat [NAME=...] [ARGS=...]
	@test -n "$(SRC)" -a -n "$(FORMAT)" || { echo "usage: make import-dataset SRC=path FORMAT=yolo|coco|voc|labelstudio|cvat [NAME=name]"; exit 2; }
	$(PY) -m scripts.datasets import "$(SRC)" --format $(FORMAT) $(if $(NAME),--name $(NAME)) $(ARGS)

export-dataset: setup ## Export collected feedback labels: FORMAT=yolo|coco OUT=path.zip
	@test -n "$(FORMAT)" -a -n "$(OUT)" || { echo "usage: make export-dataset FORMAT=yolo|coco OUT=path.zip"; exit 2; }
	$(PY) -m scripts.datasets export --format $(FORMAT) --out "$(OUT)"

bench: setup ## Serving latency/throughput, feedback rows/s, hot swaps under load, retrain loop (~15 min)
	$(PY) -m benchmarks

# --- models ----------------------------------------------------------------------------------
# DATA: an imported dataset (data/datasets/<name>, see import-dataset); FROM: your .pt to fine-tune
# or a model YAML to start from (default: the shipped weights); EPOCHS (default 30).
DATA ?=
FROM ?=
EPOCHS ?= 30
train: setup ## Train on DATA (an imported dataset) into models/<name>; no DATA: the synthetic default model (CPU: ~1 h)
ifeq ($(DATA),)
	$(PY) -m scripts.train dataset
	$(PY) -m scripts.train train --epochs $(EPOCHS)
else
	$(PY) -m scripts.train train --data $(DATA) --epochs $(EPOCHS) $(if $(FROM),--from $(FROM))
endif

# REPLACE_CLASSES=1: WEIGHTS detect other classes than the served model (your own model replacing
# the shipped one); it becomes the default and the platform's classes.
REPLACE_CLASSES ?=
CLASS_FLAG := $(if $(filter 1 true yes,$(REPLACE_CLASSES)),--replace-classes)
package: setup ## Package WEIGHTS (default: shipped model) for RUNTIME (auto) as a new .mar version
	$(PY) -m scripts.package --weights $(WEIGHTS) --runtime $(RUNTIME) $(CLASS_FLAG)

# STACK=compose: the same verbs on the compose stack (run inside its controller container).
STACK ?= demo

redeploy: setup ## Package WEIGHTS and hot-register it on the running TorchServe (STACK=compose too)
ifeq ($(STACK),compose)
	$(CONTAINERS) redeploy --weights $(WEIGHTS) --runtime $(RUNTIME) $(CLASS_FLAG)
else
	$(PY) -m scripts.models redeploy --weights $(WEIGHTS) --runtime $(RUNTIME) $(CLASS_FLAG)
endif

mlflow-sync: setup ## Mirror models/registry.json into MLflow (versions, tags, champion alias)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-http://127.0.0.1:8083} $(PY) -m scripts.models mlflow-sync

rollback: setup ## Make VERSION the serving default again, no restart (STACK=compose too)
	@test -n "$(VERSION)" || (echo "usage: make rollback VERSION=n" && exit 2)
ifeq ($(STACK),compose)
	$(CONTAINERS) rollback $(VERSION)
else
	$(PY) -m scripts.models activate $(VERSION)
endif

ref-data: setup ## Rebuild data/ref_data.csv from the training set
	$(PY) -m scripts.build_ref_data

scenario: setup ## Drift scenario end to end against the running demo (ARGS="--images 60")
	$(PY) -m scripts.scenario $(ARGS)

# Label Studio in its own venv (.run/labelstudio/venv, made on first use: its pins conflict with
# ours), data kept in .run/labelstudio/data; the gateway is its ML backend (docs/labelstudio.md).
LS_PORT ?= 8084
GATEWAY_URL ?= http://127.0.0.1:8080
labelstudio: $(STAMP) ## Run Label Studio on LS_PORT (8084), pointed at the gateway as its ML backend
	$(PY) -m devstack.labelstudio --port $(LS_PORT) --gateway $(GATEWAY_URL)

# --- containers (production path: Docker Compose, or podman + podman-compose) ------------------
# CONTAINER_ENGINE=docker|podman (default: docker when its engine answers), BASE_IMAGE (default
# python:3.11-slim), IMAGE_TAG, GATEWAY_PORT / WEBAPP_PORT / EVIDENTLY_PORT, MONITORING=1.
CONTAINERS := $(PY) -m scripts.containers

images: setup ## Build every image (deploy/images/Dockerfile) and print their sizes
	$(CONTAINERS) images

local-base: setup ## Make a Debian base image here with debootstrap (hosts that pull nothing)
	$(CONTAINERS) local-base

up: setup ## Start the compose stack (images built when missing), wait for every healthcheck
	$(CONTAINERS) up

down: ## Stop the compose stack (the models and data volumes are kept)
	@test -x $(PY) && $(CONTAINERS) down || true

compose-config: $(SYSSTAMP) ## Validate docker-compose.yml without an engine
	docker-compose -f docker-compose.yml config -q

# --- kubernetes (no cluster here: rendered and validated offline, see docs/kubernetes.md) ------
K8S := deploy/kubernetes

pipeline: $(STAMP) ## Compile the retrain pipeline's spec to deploy/kubeflow/retrain-pipeline.yaml
	$(PY) -m yoloserve.retrain.pipeline compile --out deploy/kubeflow/retrain-pipeline.yaml

k8s-manifests: $(SYSSTAMP) ## Render the dev and prod overlays into deploy/kubernetes/rendered/
	@mkdir -p $(K8S)/rendered
	@for overlay in dev prod; do \
		env=$(K8S)/overlays/$$overlay/secrets.env; \
		if [ ! -f $$env ]; then \
			python3 -c 'import secrets; w, a = secrets.token_urlsafe(24), secrets.token_urlsafe(24); print(f"GATEWAY_API_KEYS={w}\nGATEWAY_ADMIN_API_KEYS={a}\nWEBAPP_API_KEY={w}")' > $$env; \
			echo "wrote $$env with fresh random keys (git-ignored)"; \
		fi; \
		pg=$(K8S)/overlays/$$overlay/postgres.env; \
		if [ ! -f $$pg ]; then \
			python3 -c 'import secrets; print(f"POSTGRES_PASSWORD={secrets.token_urlsafe(24)}")' > $$pg; \
			echo "wrote $$pg with a fresh random password (git-ignored)"; \
		fi; \
		kubectl kustomize $(K8S)/overlays/$$overlay > $(K8S)/rendered/$$overlay.yaml || exit 1; \
		echo "$(K8S)/rendered/$$overlay.yaml"; \
	done

clean: stop ## Remove run state (keeps the venv and the shipped model)
	rm -rf .run models/store models/registry.json data/feedback data/prod_data.csv
