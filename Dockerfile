# raftnode as a container image: `raftnode` is the entrypoint and takes etcd's flags and ETCD_*
# variables, so the image drops in where an etcd image would (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the project (only what the package needs; .dockerignore keeps the rest out).
WORKDIR /build
COPY pyproject.toml README.md ./
COPY raft ./raft
COPY node ./node
COPY proto ./proto
RUN pip install . && rm -rf /build

# The learner profile's entrypoint: member add --learner, start, promote (docker-compose.yml).
COPY scripts/compose-learner /usr/local/bin/compose-learner

# A non-root user owns the data volume; a new named volume copies this ownership.
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/raftnode --create-home raftnode
USER raftnode
WORKDIR /var/lib/raftnode
VOLUME ["/var/lib/raftnode"]
ENV ETCD_DATA_DIR=/var/lib/raftnode/data

EXPOSE 2379 2380
ENTRYPOINT ["raftnode"]
