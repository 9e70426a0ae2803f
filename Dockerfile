# groupcache-rs: the `groupcache` binary in a small image, run as a non-root
# user. Build: docker build -t groupcache-rs .
# Run one node: docker run --rm -p 9999:9999 groupcache-rs
# A cluster: deploy/compose/compose.yaml (one machine) or deploy/kubernetes/.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p groupcache-cli \
 && strip target/release/groupcache

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home groupcache
COPY --from=build /src/target/release/groupcache /usr/local/bin/groupcache
USER 10001
# 8000: the peer port (bttcp, wire-compatible with go-needle/groupcache).
# 9999: the HTTP front (/api, /metrics, /healthz).
EXPOSE 8000 9999
ENTRYPOINT ["groupcache"]
CMD ["serve", "--listen", "0.0.0.0:8000", "--http", "0.0.0.0:9999", "--group", "score:67108864:60:sample", "--group", "age:67108864:60:sample"]
