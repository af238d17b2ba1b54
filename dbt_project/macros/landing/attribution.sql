{#- Incremental event attribution (macros/landing/; state.sql has the state table they share with
    the staging models).

    The models that attribute events to customers through the identity map (`attribution_since`)
    extend on a shorter rule: their previous build is older than tonight, the fingerprint (without
    the salt) is unchanged, and the identity map was not rebuilt since (`rebuilt_as_of` of
    `stg_pipeline__identity_state`). A rebuild of the map may reassign or drop any key; an extension
    only adds keys and moves merged customers' keys, dating each row it touches (`assigned_date`).
    Every case that rebuilds a staging model from the landing side (a rerun, a backfill, a reloaded
    partition, a new salt or phone country code) also rebuilds the map, so these models need not
    read the load audit or the salt, and read no source (only staging models do). -#}

{#- incremental_since (state.sql) of an event attribution model, on the rule at the top of this file. -#}
{% macro attribution_since(announce=true) -%}
    {%- set rule = attribution_extension_rule() -%}
    {{ return(previous_build_date(rule[0], rule[1], announce)) }}
{%- endmacro %}

{#- [join, conditions] on the state row under which an event attribution model may extend (a staging
    model's: _landing_extension_rule, state.sql). -#}
{% macro attribution_extension_rule() -%}
    {%- set join -%}
        cross join {{ ref('stg_pipeline__identity_state') }} as identity
    {%- endset -%}
    {%- set conditions -%}
        state.fingerprint = {{ incremental_fingerprint_sql(salted=false) }}
            and identity.rebuilt_as_of <= state.as_of_date
    {%- endset -%}
    {{ return([join, conditions]) }}
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
