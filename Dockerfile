# orgplane as a static image from scratch: the control plane (`serve`) and
# the default box image for the reference agent (command `agent`).
#
# Nothing is pulled: build the static binary first, then the image.
#
#   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o orgplane ./cmd/orgplane
#   docker build -t orgplane:latest .
FROM scratch
COPY orgplane /orgplane
USER 65534:65534
ENV ORGPLANE_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/orgplane"]
CMD ["agent"]
