# The operator's image, for charts/regionshift (image.repository, image.tag).
#   docker build -t registry.example/regionshift:0.1.0 .     (or: podman build, buildah bud)
#   docker push registry.example/regionshift:0.1.0
# Two stages: the first builds the package with the ecosystem's standard build front end,
# PyPA build (`python -m build`: the sdist, then the wheel from the sdist, exactly as
# tests/integration/test_packaging.py builds them from these same files) and collects the
# wheels of its dependencies; the image gets only those wheels, runs as a non-root user
# (uid 10001, the chart's runAsUser) and writes nothing to its filesystem (the chart mounts
# it read-only). The base is pinned by version; pin it by digest too in your own build
# (docker buildx imagetools inspect python:3.11.11-slim-bookworm).
FROM python:3.11.11-slim-bookworm AS build
RUN pip install --no-cache-dir build==1.6.1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
RUN python -m build --outdir /dist . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /dist/regionshift-*.whl

FROM python:3.11.11-slim-bookworm
RUN groupadd --gid 10001 regionshift && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin regionshift
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels regionshift && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["regionshift"]
CMD ["run", "--metrics-address=0.0.0.0", "--liveness=http://0.0.0.0:8081/healthz"]
