# Image for the production-like stack in docker-compose.yml: Airflow 3 + custseg (dbt, GX, sklearn).
# Not built on the development machines (no Docker engine there); see docs/operations.md "Production-like stack".
FROM python:3.11.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=False \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1 \
    # the project files (dbt project, sources file, seeds, DAGs) at /opt/custseg: the copies below, or the
    # folders docker-compose.yml mounts over them; the pipeline's own files go to the /data volume
    CUSTSEG_PROJECT_DIR=/opt/custseg \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/custseg/dags \
    CUSTSEG_DATA_DIR=/data

# curl: the api-server's and scheduler's healthchecks
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/custseg
# the same pins as CI (requirements.lock); the wheel carries the project files too (pyproject.toml)
COPY pyproject.toml requirements.lock README.md ./
COPY custseg ./custseg
COPY ml ./ml
COPY expectations ./expectations
COPY dags ./dags
COPY dbt_project ./dbt_project
COPY config ./config
RUN pip install uv && uv pip install --system -c requirements.lock .

RUN useradd --create-home --uid 50000 airflow \
 && mkdir -p /opt/airflow /data \
 && chown -R airflow /opt/airflow /data
USER airflow
