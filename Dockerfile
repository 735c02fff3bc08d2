# GPU image of ringtrain: CUDA 11.8 + cuDNN 8 (what @tensorflow/tfjs-node-gpu 4.x's libtensorflow 2.9 needs),
# Node 20, the compiled trainer, and @tensorflow/tfjs-node-gpu (backend "auto" picks it up).
#
#   docker build -t REGISTRY/ringtrain:gpu .
#   docker run --rm --gpus all --shm-size 8g REGISTRY/ringtrain:gpu node dist/launch/main.js --gpus 1 --dry-run examples/pretrain-brown.yaml
#
# Kubernetes manifests for it: node dist/launch/main.js k8s CONFIG.yaml --nodes N --gpus-per-node G --image REGISTRY/ringtrain:gpu
# (docs/CLUSTER.md). Building needs network access (npm registry; tfjs-node-gpu downloads libtensorflow).

ARG NODE_IMAGE=node:20-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04

FROM ${NODE_IMAGE} AS node

# ---- build: compile TypeScript, then keep production dependencies plus the native GPU backend ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npx tsc -p . \
 && npm prune --omit=dev \
 && npm install --no-save --omit=dev @tensorflow/tfjs-node-gpu@^4.22.0 \
 && rm -rf dist/test /root/.npm

# ---- runtime: CUDA userland + the Node binary from the official image ----
FROM ${CUDA_IMAGE}
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN groupadd --gid 1000 ringtrain && useradd --uid 1000 --gid 1000 --create-home ringtrain \
 && mkdir -p /runs /config && chown ringtrain:ringtrain /runs
WORKDIR /app
COPY --from=build --chown=ringtrain:ringtrain /app /app
ENV NODE_ENV=production \
    TF_CPP_MIN_LOG_LEVEL=1
# Coordinator (node 0) and the first ring peer ports (RINGTRAIN_PEER_PORT_BASE + local rank).
EXPOSE 29400 29500-29507
USER ringtrain
ENTRYPOINT []
CMD ["node", "/app/dist/launch/main.js", "--help"]
