{#- The latest landed version per business key (macros/landing/). A staging model of a landed source
    keeps one row per key: the version landed last among the rows visible as of its build date. When
    the build extends the table, tonight's rows compete with the versions already held for the same
    keys (state.sql says when it may). -#}

{#- The candidates for "latest landed version": tonight's rows (dated by this build, `built_as_of`)
    plus, when extending, the versions already held for the same keys. `cte` has the model's final
    columns in table order but the last, built_as_of (the fingerprint guarantees the table was
    built by this same SQL). -#}
{% macro with_existing_versions(cte, key, since) -%}
    select {{ cte }}.*, {{ as_of_date() }} as built_as_of from {{ cte }}
    {%- if since %}
    union all
    select * from {{ this }}
    where {{ key }} in (select {{ key }} from {{ cte }})
    {%- endif %}
{%- endmacro %}

{#- The latest landed version of each `key` among the candidates (with_existing_versions): the rows
    ranked by the columns of `order_by`, most significant first, each descending, and each key's first
    kept. By default the version landed last wins, then the later line of its landing file; a source
    may rank on a column of its own in between (the CRM on updated_at). The rows have every column of
    `cte`, then built_as_of and version_rank (always 1): the model's final CTE names the columns it
    keeps, and leaves version_rank out. -#}
{% macro latest_landed_version(cte, key, since, order_by=['landed_date', 'source_line']) -%}
    select *
    from (
        select
            candidates.*,
            row_number() over (
                partition by {{ key }}
                order by {{ order_by | join(' desc, ') }} desc
            ) as version_rank
        from (
            {{ with_existing_versions(cte, key, since) }}
        ) as candidates
    ) as ranked
    where version_rank = 1
{%- endmacro %}

{#- Indexes on the business key and on built_as_of, on PostgreSQL only: the nightly merge and the
    key's unique_incremental test look up tonight's keys among millions of rows, and the test finds
    the rows written since the last verified build by their date. DuckDB joins by hashing and skips
    row groups by their min/max dates; an index there would only slow the inserts. (dbt-postgres
    creates them with the table: an existing table gets them from a `--full-refresh`.) -#}
{% macro postgres_key_index(key) -%}
    {{ return([{'columns': [key]}, {'columns': ['built_as_of']}] if target.type == 'postgres' else []) }}
{%- endmacro %}
