# Kefu: `make run` starts the whole product locally; `make test` runs every test.
# Both set up everything they need first (a virtualenv, Node.js with the local stack's DynamoDB and terser,
# and for browser tests Debian's chromium). `make reset` deletes the local stack's data.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
STAMP  := $(VENV)/.installed
DATA_DIR ?= local-data
STORE_DIR := local/dynalite
STORE_STAMP := $(STORE_DIR)/node_modules/.installed
WEB_BUILD_STAMP := web/build/node_modules/.installed

.PHONY: run test setup browser bench package deploy clean reset

setup: $(STAMP) $(STORE_STAMP) $(WEB_BUILD_STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

# The local stack's DynamoDB, dynalite, runs on Node.js: Debian's nodejs and npm when missing, then
# the packages locked in local/dynalite/package-lock.json.
$(STORE_STAMP): $(STORE_DIR)/package.json $(STORE_DIR)/package-lock.json
	@{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	cd $(STORE_DIR) && npm ci --loglevel=error
	@touch $@

# terser, which minifies the widget for hosting (infra/widget.py), locked in web/build/package-lock.json.
$(WEB_BUILD_STAMP): web/build/package.json web/build/package-lock.json | $(STORE_STAMP)
	cd web/build && npm ci --loglevel=error
	@touch $@

# Debian's chromium, for the Playwright browser tests (Playwright's own browser download cannot work
# offline), and a CJK font so the Chinese UI renders in screenshots.
browser:
	@{ command -v chromium >/dev/null 2>&1 && [ -d /usr/share/fonts/truetype/wqy ]; } || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null; }

# TEMPLATE=out/package/sam.json boots what `make package` built instead of the checkout.
run: setup
	$(PY) -m local --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) $(if $(TEMPLATE),--template $(TEMPLATE))

# Start the next `make run` fresh: its tables, uploads and token secret are deleted.
reset:
	$(PYTHON) -m local.data_dir reset $(DATA_DIR)

test: setup browser
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

STAGE  ?= dev
STACK  ?= kefu-$(STAGE)

# The deployment zip and CloudFormation template in out/package/, built and checked offline.
package: setup
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(PY) -m infra.package --stage $(STAGE)
	$(PY) -m infra.widget

# The real deploy (docs/deploy.md): needs the aws CLI, credentials, and an S3 bucket for the code.
#   make deploy STAGE=prod BUCKET=my-artifacts [PARAMS="OssBucket=... StsRoleArn=..."]
deploy: package
	@test -n "$(BUCKET)" || { echo "make deploy needs BUCKET=<an S3 bucket for the code package>"; exit 2; }
	aws cloudformation package --template-file out/package/sam.json --s3-bucket $(BUCKET) \
	  --output-template-file out/package/packaged.yaml
	aws cloudformation deploy --template-file out/package/packaged.yaml --stack-name $(STACK) \
	  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND $(if $(PARAMS),--parameter-overrides $(PARAMS))
	aws cloudformation describe-stacks --stack-name $(STACK) --query "Stacks[0].Outputs" --output table

clean:
	rm -rf $(VENV) out test-output .pytest_cache $(STORE_DIR)/node_modules web/build/node_modules
