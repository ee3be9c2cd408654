# The operator's container image: built on Debian with the full toolchain, run on a distroless
# Node.js 24 base that has no shell, no package manager and runs as an unprivileged user.
# test/unit/dockerfile.test.ts checks the invariants below; keep them when changing this file.
# Needs BuildKit (`RUN --mount`): the default builder of Docker 23 and later, DOCKER_BUILDKIT=1
# before. scripts/build-image.sh builds it, cached by its inputs.

# ---- build: compile the TypeScript sources and collect the production dependencies ----------
FROM node:24-bookworm-slim AS build
WORKDIR /app

# The lockfile first, so a change to the sources alone reuses the installed dependencies.
COPY package.json package-lock.json ./
# Installs the dev dependencies too: tsc, esbuild, and the `node` package whose install script
# (allowed in package.json `allowScripts`) provides the Node.js 24 that every npm script runs on.
# Behind a TLS-intercepting proxy npm must trust the proxy's CA: give it as the optional build
# secret `build-ca` (`docker build --secret id=build-ca,src=<PEM bundle>`). A secret is mounted
# for this one instruction and written to no layer, so the CA never reaches the image.
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/build-ca; fi && \
    npm ci --no-fund --no-audit

# tsc, then the part of the Kubernetes client the operator uses bundled into its one module that
# imports it (scripts/bundle-kube-client.ts, docs/adr/0025-kube-client-bundle.md).
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle-kube-client.ts ./scripts/bundle-kube-client.ts
COPY src ./src
RUN npm run build

# Production dependencies only: drops tsc, the linters, vitest and the `node` package's own Node.js
# binary, which the runtime image must not carry. No production dependency has an install script.
# The packages come from npm's cache of the first install; npm may still ask the registry, so the
# CA secret is mounted here too.
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/build-ca; fi && \
    npm ci --omit=dev --ignore-scripts --no-fund --no-audit

# The data directory, empty and private: the runtime stage has no shell to create it. Under a
# parent of its own, because COPY keeps the mode of a directory it copies, but not of the one
# whose contents it copies.
RUN install -d -m 0700 /data/kube-audit

# ---- runtime ----------------------------------------------------------------------------------
# distroless nodejs24: Node.js 24 on Debian 12; the :nonroot tag's default user is 65532.
FROM gcr.io/distroless/nodejs24-debian12:nonroot

LABEL org.opencontainers.image.title="kube-audit-operator" \
      org.opencontainers.image.description="Dynamic Kubernetes audit sinks: per-sink audit policies with kube-apiserver semantics, written to InfluxDB" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV NODE_ENV=production
# V8's heap limits, chosen by measurement (docs/adr/0021-memory.md): a young generation of two
# 16 MiB semi-spaces, and an old generation of at most 512 MiB, a limit that also makes V8 collect
# it before it grows far beyond the live objects. Without them V8 sizes both from the memory it
# finds (64 MiB semi-spaces and a 4 GiB heap on a 24 GiB machine) and RSS reaches 350-450 MiB with
# one sink. bench/peer.ts runs the process with this line's value; the chart sets the same by
# default (value `nodeOptions`), which overrides it.
ENV NODE_OPTIONS="--max-semi-space-size=16 --max-old-space-size=512"

# Only what `node dist/main.js` loads: the compiled code, its dependencies, and package.json (the
# `--version` text and `"type": "module"`). Owned by root, /app included, so the process cannot
# modify them: COPY creates /app as root, where WORKDIR would create it as the base's user 65532.
COPY --from=build /app/package.json /app/package.json
COPY --from=build /app/node_modules /app/node_modules
COPY --from=build /app/dist /app/dist
WORKDIR /app

# The spool and line-protocol files, at the path the chart mounts its volume on. Owned by the
# process's user: Docker seeds a fresh named volume with the image's directory, owner included, so
# `-v <volume>:/var/lib/kube-audit` is writable as well. VOLUME gives `docker run --read-only`
# without any -v a writable (anonymous) volume there; Kubernetes mounts the chart's volume over it.
COPY --from=build --chown=65532:65532 /data/ /var/lib/
ENV KUBE_AUDIT_DATA_DIR=/var/lib/kube-audit
VOLUME /var/lib/kube-audit

# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532

# 8443: the receiver's conventional unprivileged HTTPS port (--listen).
EXPOSE 8443

# V8 optimises hot functions on the main thread instead of its worker threads: 13 to 24 MiB less
# resident memory with 1, 100 and 1,000 sinks, for the same or more events per CPU second. And it
# never allocates a place's objects straight into the old generation because earlier ones survived
# young collections: a batch's objects, alive while its write syncs, would send every later
# batch's objects there, to wait for full collections (about twice as many of them, and 20 to 30%
# fewer events per CPU second). V8 flags that NODE_OPTIONS does not accept, so they are given here
# (docs/adr/0021-memory.md); test/harness/standalone.ts runs the process for benchmarks with this
# line's flags.
ENTRYPOINT ["/nodejs/bin/node", "--no-concurrent-recompilation", "--no-allocation-site-pretenuring", "/app/dist/main.js"]
CMD ["run"]
