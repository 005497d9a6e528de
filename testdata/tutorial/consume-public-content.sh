#!/usr/bin/env bash
# The Azure CLI commands of the ACR Tasks tutorial "consume and maintain
# public content" (the seeds' document), in its order and as written, with
# gantry in place of az. Run by internal/server TestTutorialCommandsAsWritten
# against a real server and engine, with gantry on PATH and logged in as the
# admin.
#
# What differs from the tutorial, all above the line "The tutorial's
# commands" below: Docker Hub is a gantry registry (dockerhub, anonymous pull,
# with a stand-in node:15-alpine), the GitHub forks are local git
# repositories made from the samples in $SAMPLES, and the login servers are
# the ones gantry gave the registries (REGISTRY_*_URL are set after the
# registries are created, from gantry acr show). The "watch" commands and the
# git commits of the tutorial's later sections are left out; the walkthrough
# test (internal/demo) runs those stages.
set -euo pipefail

# Set the three registry names, must be globally unique:
REGISTRY_PUBLIC=publicregistry
REGISTRY_BASE_ARTIFACTS=contosobaseartifacts
REGISTRY=contoso

# set the location all resources will be created in:
RESOURCE_GROUP_LOCATION=eastus

# default resource groups
REGISTRY_PUBLIC_RG=${REGISTRY_PUBLIC}-rg
REGISTRY_BASE_ARTIFACTS_RG=${REGISTRY_BASE_ARTIFACTS}-rg
REGISTRY_RG=${REGISTRY}-rg

# Azure key vault for storing secrets, name must be globally unique
AKV=acr-task-credentials
AKV_RG=${AKV}-rg

# ACI for hosting the deployed application
ACI=hello-world-aci
ACI_RG=${ACI}-rg

# Docker Hub: a gantry registry with the stand-in node image, and a pull
# token as the Docker Hub credentials.
gantry acr create -n dockerhub --anonymous-pull -o none
REGISTRY_DOCKERHUB_URL=$(gantry acr show -n dockerhub --query loginServer -o tsv)
gantry demo push-standin --image "$REGISTRY_DOCKERHUB_URL/node:15-alpine"
REGISTRY_DOCKERHUB_USER=dockerhub-user
REGISTRY_DOCKERHUB_PASSWORD=$(gantry acr token create --name dockerhub-user --registry dockerhub \
  --scope-map _repositories_pull -o tsv --query 'credentials.passwords[0].value')

# The forks: local repositories with the samples' files.
GIT=$(mktemp -d)
for r in base-image-node import-baseimage-node hello-world; do
  git init -q --bare -b main "$GIT/$r.git"
  git clone -q "$GIT/$r.git" "$GIT/work/$r"
  cp "$SAMPLES/$r"/* "$GIT/work/$r/"
  (cd "$GIT/work/$r" && git add -A && git -c user.name=t -c user.email=t@gantry.test commit -qm "Initial commit" \
    && git push -q origin HEAD:main)
done
GIT_BASE_IMAGE_NODE=$GIT/base-image-node.git#main
GIT_NODE_IMPORT=$GIT/import-baseimage-node.git#main
GIT_HELLO_WORLD=$GIT/hello-world.git#main
GIT_TOKEN=local-repositories-need-no-token

# The tutorial's commands.
gantry group create --name $REGISTRY_PUBLIC_RG --location $RESOURCE_GROUP_LOCATION

gantry acr create --resource-group $REGISTRY_PUBLIC_RG --name $REGISTRY_PUBLIC --sku Premium

gantry group create --name $REGISTRY_BASE_ARTIFACTS_RG --location $RESOURCE_GROUP_LOCATION

gantry acr create --resource-group $REGISTRY_BASE_ARTIFACTS_RG --name $REGISTRY_BASE_ARTIFACTS --sku Premium

gantry group create --name $REGISTRY_RG --location $RESOURCE_GROUP_LOCATION

gantry acr create --resource-group $REGISTRY_RG --name $REGISTRY --sku Premium

# fully qualified registry urls (the login servers gantry gave them)
REGISTRY_PUBLIC_URL=$(gantry acr show -n $REGISTRY_PUBLIC --query loginServer -o tsv)
REGISTRY_BASE_ARTIFACTS_URL=$(gantry acr show -n $REGISTRY_BASE_ARTIFACTS --query loginServer -o tsv)
REGISTRY_URL=$(gantry acr show -n $REGISTRY --query loginServer -o tsv)

gantry group create --name $AKV_RG --location $RESOURCE_GROUP_LOCATION

gantry keyvault create --resource-group $AKV_RG --name $AKV

gantry keyvault secret set \
--vault-name $AKV \
--name registry-dockerhub-user \
--value $REGISTRY_DOCKERHUB_USER

gantry keyvault secret set \
--vault-name $AKV \
--name registry-dockerhub-password \
--value $REGISTRY_DOCKERHUB_PASSWORD

gantry keyvault secret set --vault-name $AKV --name github-token --value $GIT_TOKEN

gantry keyvault secret show --vault-name $AKV --name github-token --query value -o tsv

gantry group create --name $ACI_RG --location $RESOURCE_GROUP_LOCATION

gantry acr task create \
  --name node-public \
  -r $REGISTRY_PUBLIC \
  -f acr-task.yaml \
  --context $GIT_BASE_IMAGE_NODE \
  --git-access-token $(gantry keyvault secret show \
                        --vault-name $AKV \
                        --name github-token \
                        --query value -o tsv) \
  --set REGISTRY_FROM_URL=${REGISTRY_DOCKERHUB_URL}/ \
  --assign-identity

gantry acr task credential add \
  -n node-public \
  -r $REGISTRY_PUBLIC \
  --login-server $REGISTRY_DOCKERHUB_URL \
  -u https://${AKV}.vault.azure.net/secrets/registry-dockerhub-user \
  -p https://${AKV}.vault.azure.net/secrets/registry-dockerhub-password \
  --use-identity [system]

gantry keyvault set-policy \
  --name $AKV \
  --resource-group $AKV_RG \
  --object-id $(gantry acr task show \
                  --name node-public \
                  --registry $REGISTRY_PUBLIC \
                  --query identity.principalId --output tsv) \
  --secret-permissions get

gantry acr task run -r $REGISTRY_PUBLIC -n node-public

gantry acr repository show-tags -n $REGISTRY_PUBLIC --repository node

gantry keyvault secret set \
  --vault-name $AKV \
  --name "registry-${REGISTRY_PUBLIC}-user" \
  --value "registry-${REGISTRY_PUBLIC}-user"

gantry keyvault secret set \
  --vault-name $AKV \
  --name "registry-${REGISTRY_PUBLIC}-password" \
  --value $(gantry acr token create \
              --name "registry-${REGISTRY_PUBLIC}-user" \
              --registry $REGISTRY_PUBLIC \
              --scope-map _repositories_pull \
              -o tsv \
              --query credentials.passwords[0].value)

gantry keyvault secret set \
  --vault-name $AKV \
  --name "registry-${REGISTRY}-user" \
  --value "registry-${REGISTRY}-user"

gantry keyvault secret set \
  --vault-name $AKV \
  --name "registry-${REGISTRY}-password" \
  --value $(gantry acr token create \
              --name "registry-${REGISTRY}-user" \
              --registry $REGISTRY \
              --repository hello-world content/read \
              -o tsv \
              --query credentials.passwords[0].value)

gantry acr task create \
  -n hello-world \
  -r $REGISTRY \
  -f acr-task.yaml \
  --context $GIT_HELLO_WORLD \
  --git-access-token $(gantry keyvault secret show \
                        --vault-name $AKV \
                        --name github-token \
                        --query value -o tsv) \
  --set REGISTRY_FROM_URL=${REGISTRY_PUBLIC_URL}/ \
  --set KEYVAULT=$AKV \
  --set ACI=$ACI \
  --set ACI_RG=$ACI_RG \
  --assign-identity

gantry acr task credential add \
  -n hello-world \
  -r $REGISTRY \
  --login-server $REGISTRY_PUBLIC_URL \
  -u https://${AKV}.vault.azure.net/secrets/registry-${REGISTRY_PUBLIC}-user \
  -p https://${AKV}.vault.azure.net/secrets/registry-${REGISTRY_PUBLIC}-password \
  --use-identity [system]

gantry keyvault set-policy \
  --name $AKV \
  --resource-group $AKV_RG \
  --object-id $(gantry acr task show \
                  --name hello-world \
                  --registry $REGISTRY \
                  --query identity.principalId --output tsv) \
  --secret-permissions get

gantry role assignment create \
  --assignee $(gantry acr task show \
  --name hello-world \
  --registry $REGISTRY \
  --query identity.principalId --output tsv) \
  --scope $(gantry group show -n $ACI_RG --query id -o tsv) \
  --role owner

gantry acr task run -r $REGISTRY -n hello-world

gantry container show \
  --resource-group $ACI_RG \
  --name ${ACI} \
  --query ipAddress.ip \
  --out tsv

gantry acr task logs -r $REGISTRY_PUBLIC

gantry acr task logs -r $REGISTRY

gantry container show \
  --resource-group $ACI_RG \
  --name ${ACI} \
  --query ipAddress.ip \
  --out tsv

  gantry acr task create \
  --name base-import-node \
  -f acr-task.yaml \
  -r $REGISTRY_BASE_ARTIFACTS \
  --context $GIT_NODE_IMPORT \
  --git-access-token $(gantry keyvault secret show \
                        --vault-name $AKV \
                        --name github-token \
                        --query value -o tsv) \
  --set REGISTRY_FROM_URL=${REGISTRY_PUBLIC_URL}/ \
  --assign-identity

gantry acr task credential add \
  -n base-import-node \
  -r $REGISTRY_BASE_ARTIFACTS \
  --login-server $REGISTRY_PUBLIC_URL \
  -u https://${AKV}.vault.azure.net/secrets/registry-${REGISTRY_PUBLIC}-user \
  -p https://${AKV}.vault.azure.net/secrets/registry-${REGISTRY_PUBLIC}-password \
  --use-identity [system]

gantry keyvault set-policy \
  --name $AKV \
  --resource-group $AKV_RG \
  --object-id $(gantry acr task show \
                  --name base-import-node \
                  --registry $REGISTRY_BASE_ARTIFACTS \
                  --query identity.principalId --output tsv) \
  --secret-permissions get

gantry acr task run -n base-import-node -r $REGISTRY_BASE_ARTIFACTS

gantry keyvault secret set \
  --vault-name $AKV \
  --name "registry-${REGISTRY_BASE_ARTIFACTS}-user" \
  --value "registry-${REGISTRY_BASE_ARTIFACTS}-user"

gantry keyvault secret set \
  --vault-name $AKV \
  --name "registry-${REGISTRY_BASE_ARTIFACTS}-password" \
  --value $(gantry acr token create \
              --name "registry-${REGISTRY_BASE_ARTIFACTS}-user" \
              --registry $REGISTRY_BASE_ARTIFACTS \
              --repository node content/read \
              -o tsv \
              --query credentials.passwords[0].value)

gantry acr task credential add \
  -n hello-world \
  -r $REGISTRY \
  --login-server $REGISTRY_BASE_ARTIFACTS_URL \
  -u https://${AKV}.vault.azure.net/secrets/registry-${REGISTRY_BASE_ARTIFACTS}-user \
  -p https://${AKV}.vault.azure.net/secrets/registry-${REGISTRY_BASE_ARTIFACTS}-password \
  --use-identity [system]

gantry acr task update \
  -n hello-world \
  -r $REGISTRY \
  --set KEYVAULT=$AKV \
  --set REGISTRY_FROM_URL=${REGISTRY_BASE_ARTIFACTS_URL}/ \
  --set ACI=$ACI \
  --set ACI_RG=$ACI_RG

gantry acr task run -r $REGISTRY -n hello-world
