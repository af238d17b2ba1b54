{#- Incremental staging of landed sources, point-in-time correct.

    A landed row is *visible* as of date D when it landed in a partition on or before D and, for an
    event source, happened before the end of D (`visible_as_of`). A staging model holds, per business
    key, the latest landed version among the rows visible as of the date it was last built. Its state
    row in `<build schema>.dbt_incremental_state` records that date, the newest successful load in
    `ops.load_audit` it had seen, and a fingerprint of its code and settings.

    Tonight's build *extends* the table (`incremental_since` returns the previous date) only when all
    of these hold, so extending gives exactly what a rebuild would:
      - tonight's date is later than the previous one (a rerun or a backfill rebuilds);
      - no partition on or before the previous date was (re)loaded since (a late file for an old day,
        or a reloaded partition, rebuilds);
      - the fingerprint is unchanged: the model's SQL and that of every model and seed upstream of
        it (the fx_rates seed among them), the PII salt, reporting currency and phone country code
        (any of them changing every row rebuilds).

    Otherwise it rebuilds from scratch (`incremental_reset` empties the table first). When extending,
    the new rows are those visible tonight but not as of the previous date; with the rows already held
    for the same keys they compete for "latest landed version" (`with_existing_versions`).

    The models that attribute events to customers through the identity map (`attribution_since`)
    extend on a shorter rule: their previous build is older than tonight, the fingerprint (without
    the salt) is unchanged, and the identity map was not rebuilt since (`rebuilt_as_of` of
    `stg_pipeline__identity_state`). A rebuild of the map may reassign or drop any key; an extension
    only adds keys and moves merged customers' keys, dating each row it touches (`assigned_date`).
    Every case above that rebuilds a staging model from the landing side (a rerun, a backfill, a
    reloaded partition, a new salt or phone country code) also rebuilds the map, so these models
    need not read the load audit or the salt, and read no source (only staging models do).

    Changing a macro that a model uses does not change its fingerprint: rebuild with
    `dbt build --full-refresh` (or empty dbt_incremental_state) after such a change. -#}

{#- `landed` is the column of the landing partition's date: `_partition_date` in raw, `landed_date` once staged. -#}
{% macro visible_as_of(as_of, event_at=none, landed='_partition_date') -%}
    {{ landed }} <= cast('{{ as_of }}' as date)
    {%- if event_at %}
        {%- set day_after = modules.datetime.date.fromisoformat(as_of | string) + modules.datetime.timedelta(days=1) %}
        and {{ event_at }} < cast('{{ day_after.isoformat() }} 00:00:00' as timestamp)
    {%- endif %}
{%- endmacro %}

{#- Rows of a landed source to read tonight: visible as of the run date, minus what the previous build saw. -#}
{% macro landed_rows_to_read(since, event_at=none) -%}
    {{ visible_as_of(as_of_date_string(), event_at) }}
    {%- if since %}
        and not ({{ visible_as_of(since, event_at) }})
    {%- endif %}
{%- endmacro %}

{#- `verified_as_of`: the as-of date of the newest build of the table that its key's uniqueness test
    passed on (see unique_incremental). -#}
{% macro incremental_state_ddl() -%}
    create table if not exists {{ incremental_state_relation() }} (
        model_name {{ dbt.type_string() }} not null,
        as_of_date date not null,
        loads_seen_at timestamp,
        fingerprint {{ dbt.type_string() }} not null,
        verified_as_of date
    )
{%- endmacro %}

{#- Create the state table, or give one made before verified_as_of existed that column. The alter
    runs only when the column is missing: on PostgreSQL even `add column if not exists` takes an
    exclusive lock, held to the end of the model's transaction, which would queue every other
    incremental model of the night behind it. -#}
{% macro ensure_incremental_state_table() -%}
    {%- set state = incremental_state_relation() -%}
    {%- call statement('incremental_state_table') -%}
        {{ incremental_state_ddl() }}
    {%- endcall -%}
    {%- if not _state_has_verified_column(state) -%}
        {%- call statement('incremental_state_verified_column') -%}
            alter table {{ state }} add column verified_as_of date
        {%- endcall -%}
    {%- endif -%}
{%- endmacro %}

{#- Whether the state table has verified_as_of (one made before that column has not). -#}
{% macro _state_has_verified_column(state) -%}
    {%- set columns = adapter.get_columns_in_relation(state) | map(attribute='name') | map('lower') | list -%}
    {{ return('verified_as_of' in columns) }}
{%- endmacro %}

{% macro incremental_state_relation() -%}
    {{ return(api.Relation.create(database=target.database, schema=target.schema,
                                  identifier='dbt_incremental_state', type='table')) }}
{%- endmacro %}

{#- The fingerprint's text: this model's code, the code of every model and seed upstream of it, and
    the settings that change every row. -#}
{% macro incremental_fingerprint_text() -%}
    {%- set nodes = graph.get('nodes') or {} -%}
    {%- set parts = [(model.get('checksum') or {}).get('checksum', ''), var('reporting_currency'),
                     var('phone_country_code')] -%}
    {%- set upstream = (model.get('depends_on') or {}).get('nodes', []) | list -%}
    {%- set seen = [] -%}
    {#- breadth-first over depends_on: the loop also visits the parents appended while it runs -#}
    {%- for node_id in upstream -%}
        {%- if node_id not in seen -%}
            {%- do seen.append(node_id) -%}
            {%- set node = nodes.get(node_id) or {} -%}
            {%- do parts.append(node_id ~ '=' ~ (node.get('checksum') or {}).get('checksum', '')) -%}
            {%- for parent in (node.get('depends_on') or {}).get('nodes', []) -%}
                {%- do upstream.append(parent) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return((parts[:3] + (parts[3:] | sort)) | join('|') | replace("'", "''")) }}
{%- endmacro %}

{#- SQL for the fingerprint; a staging model's includes the salt (read, never rendered). -#}
{% macro incremental_fingerprint_sql(salted=true) -%}
    {%- if salted -%}
        md5(pii_salt || '{{ incremental_fingerprint_text() }}')
    {%- else -%}
        md5('{{ incremental_fingerprint_text() }}')
    {%- endif -%}
{%- endmacro %}

{#- The date this model was last built as of, when tonight may extend it; none means rebuild. -#}
{% macro incremental_since(announce=true) -%}
    {%- set rule = _landing_extension_rule() -%}
    {{ return(_previous_build_date(rule[0], rule[1], announce)) }}
{%- endmacro %}

{#- The same for an event attribution model (see the top of this file). -#}
{% macro attribution_since(announce=true) -%}
    {%- set rule = _attribution_extension_rule() -%}
    {{ return(_previous_build_date(rule[0], rule[1], announce)) }}
{%- endmacro %}

{#- [join, conditions] on the state row under which a staging model of a landed source may extend. -#}
{% macro _landing_extension_rule() -%}
    {%- set join -%}
        cross join {{ source('pipeline', 'pii_salt') }}
    {%- endset -%}
    {%- set conditions -%}
        state.fingerprint = {{ incremental_fingerprint_sql() }}
            and not exists (
                select 1
                from {{ source('ops', 'load_audit') }} as loads
                where loads.status = 'success'
                    and loads.partition_date <= state.as_of_date
                    and loads.recorded_at > coalesce(state.loads_seen_at, cast('1900-01-01' as timestamp))
            )
    {%- endset -%}
    {{ return([join, conditions]) }}
{%- endmacro %}

{#- The same for an event attribution model. -#}
{% macro _attribution_extension_rule() -%}
    {%- set join -%}
        cross join {{ ref('stg_pipeline__identity_state') }} as identity
    {%- endset -%}
    {%- set conditions -%}
        state.fingerprint = {{ incremental_fingerprint_sql(salted=false) }}
            and identity.rebuilt_as_of <= state.as_of_date
    {%- endset -%}
    {{ return([join, conditions]) }}
{%- endmacro %}

{#- The state row's date when it is older than tonight and `conditions` hold (with `join` joined). -#}
{% macro _previous_build_date(join, conditions, announce) -%}
    {%- set build = _previous_build(join, conditions) -%}
    {%- set since = build[0] if build else none -%}
    {%- if execute and is_incremental() and announce %}{{ log(this.identifier ~ ": " ~ ("extending the build as of " ~ since if since else "rebuilding from scratch"), info=true) }}{% endif -%}
    {{ return(since) }}
{%- endmacro %}

{#- [as_of_date, verified_as_of] (ISO date strings; the second may be none) of the state row when
    tonight may extend the table, else none. One query for both, so the post_hook does not ask twice. -#}
{% macro _previous_build(join, conditions) -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set state = incremental_state_relation() -%}
    {%- do ensure_incremental_state_table() -%}
    {%- set query -%}
        select
            cast(state.as_of_date as {{ dbt.type_string() }}),
            cast(state.verified_as_of as {{ dbt.type_string() }})
        from {{ state }} as state
        {{ join }}
        where state.model_name = '{{ this.identifier }}'
            and state.as_of_date < {{ as_of_date() }}
            and {{ conditions }}
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {{ return([rows[0][0], rows[0][1]] if rows | length == 1 else none) }}
{%- endmacro %}

{#- pre_hook: empty the table when tonight rebuilds it (the incremental materialization then inserts everything). -#}
{% macro incremental_reset() -%}
    {%- if execute and is_incremental() and not incremental_since(announce=false) -%}
        delete from {{ this }}
    {%- endif -%}
{%- endmacro %}

{#- pre_hook of an event attribution model: empty the table when tonight rebuilds it; when it extends,
    remove the events that have a newer landed version tonight. The delete+insert strategy replaces
    only the events it inserts, and a new version that no longer attributes (an address that matches
    no customer, a cancelled order) inserts none. `events` lists, per staging model read, the
    expression of the table's key and the event time column: [[model, key_expression, event_at]]. -#}
{% macro attribution_reset(key, events) -%}
    {%- if execute and is_incremental() -%}
        {%- set since = attribution_since(announce=false) -%}
        {%- if not since -%}
            delete from {{ this }}
        {%- else -%}
            delete from {{ this }}
            where {{ key }} in (
            {%- for model_name, key_expression, event_at in events %}
                {% if not loop.first %}union all {% endif -%}
                select {{ key_expression }}
                from {{ ref(model_name) }}
                where {{ newly_visible_events(since, event_at) }}
            {%- endfor %}
            )
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- Keys of one type (re)assigned to a customer since the previous build: the events found by them
    must be attributed again (a new key, or a merge moving the key to the surviving customer). -#}
{% macro keys_assigned_since(since, key_type) -%}
    select key_value
    from {{ ref('int_customer_keys') }}
    where key_type = '{{ key_type }}' and assigned_date > cast('{{ since }}' as date)
{%- endmacro %}

{#- Staged events that were not visible as of `since` (see visible_as_of). -#}
{% macro newly_visible_events(since, event_at) -%}
    not ({{ visible_as_of(since, event_at, 'landed_date') }})
{%- endmacro %}

{#- post_hook: remember what this build saw (same transaction as the model's insert). An event
    attribution model (`reads_landing=false`) records no load and an unsalted fingerprint. A build
    that extended the table keeps the date its rows were last verified unique; a rebuild has none. -#}
{% macro record_incremental_state(reads_landing=true) -%}
    {%- set state = incremental_state_relation() -%}
    {%- set verified = none -%}
    {%- if execute and is_incremental() -%}
        {%- set rule = _landing_extension_rule() if reads_landing else _attribution_extension_rule() -%}
        {%- set build = _previous_build(rule[0], rule[1]) -%}
        {%- set verified = build[1] if build else none -%}
    {%- elif execute -%}
        {%- do ensure_incremental_state_table() -%}
    {%- endif -%}
    delete from {{ state }} where model_name = '{{ this.identifier }}';
    insert into {{ state }} (model_name, as_of_date, loads_seen_at, fingerprint, verified_as_of)
    select
        '{{ this.identifier }}',
        {{ as_of_date() }},
    {%- if reads_landing %}
        (select max(recorded_at) from {{ source('ops', 'load_audit') }} where status = 'success'),
        {{ incremental_fingerprint_sql() }},
    {%- else %}
        cast(null as timestamp),
        {{ incremental_fingerprint_sql(salted=false) }},
    {%- endif %}
        {% if verified %}cast('{{ verified }}' as date){% else %}cast(null as date){% endif %}
    {%- if reads_landing %}
    from {{ source('pipeline', 'pii_salt') }}
    {%- endif %}
{%- endmacro %}

{#- The `verified_as_of` of a model's state row (an ISO date string), or none. Read-only, for the key
    test: no state table yet (or one from before the column) means nothing was verified. -#}
{% macro verified_build_date(identifier) -%}
    {%- set state = incremental_state_relation() -%}
    {%- if not execute or adapter.get_relation(state.database, state.schema, state.identifier) is none
            or not _state_has_verified_column(state) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set rows = run_query(
        "select cast(verified_as_of as " ~ dbt.type_string() ~ ") from " ~ state
        ~ " where model_name = '" ~ identifier ~ "' and verified_as_of is not null"
    ).rows -%}
    {{ return(rows[0][0] if rows | length == 1 else none) }}
{%- endmacro %}

{#- on-run-end: a passed unique_incremental test verified its model's table as of the model's
    latest build; record that date, so the next nights test only the rows they write (see
    generic_tests/unique_incremental.sql). Runs after every dbt command; a command that passed no
    such test runs no SQL. -#}
{% macro record_verified_builds(results) -%}
    {%- set verified = [] -%}
    {%- if execute -%}
        {%- for result in results -%}
            {%- set node = result.node -%}
            {%- if result.status == 'pass' and node.resource_type == 'test' and node.test_metadata
                    and node.test_metadata.name == 'unique_incremental' and node.attached_node in graph.nodes -%}
                {%- do verified.append(graph.nodes[node.attached_node].alias) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if verified -%}
        update {{ incremental_state_relation() }}
        set verified_as_of = as_of_date
        where model_name in ('{{ verified | join("', '") }}')
    {%- endif -%}
{%- endmacro %}

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

{#- Indexes on the business key and on built_as_of, on PostgreSQL only: the nightly merge and the
    key's unique_incremental test look up tonight's keys among millions of rows, and the test finds
    the rows written since the last verified build by their date. DuckDB joins by hashing and skips
    row groups by their min/max dates; an index there would only slow the inserts. (dbt-postgres
    creates them with the table: an existing table gets them from a `--full-refresh`.) -#}
{% macro postgres_key_index(key) -%}
    {{ return([{'columns': [key]}, {'columns': ['built_as_of']}] if target.type == 'postgres' else []) }}
{%- endmacro %}
