# Multi-stage build: a static (musl) release binary in an image with nothing else in it.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/spark-webhook /spark-webhook

FROM scratch
COPY --from=build /spark-webhook /spark-webhook
# Numeric non-root user: runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["/spark-webhook"]
CMD ["serve"]
