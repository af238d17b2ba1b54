# Image for the production-like stack in docker-compose.yml: Airflow 3 + custseg (dbt, GX, sklearn).
# Not built on the development machines (no Docker engine there); see README "What was verified".
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/custseg/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=False \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libpq-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/custseg
COPY pyproject.toml README.md ./
COPY custseg ./custseg
COPY ml ./ml
COPY expectations ./expectations
RUN pip install uv && uv pip install --system .
COPY dags ./dags
COPY dbt_project ./dbt_project
COPY config ./config

RUN useradd --create-home --uid 50000 airflow && mkdir -p /opt/airflow && chown -R airflow /opt/airflow /opt/custseg
USER airflow
