-- Marketing consent per customer and channel (e-mail, SMS, ad audiences) as of the run date: whom each
-- channel may reach. GDPR Art. 21 gives everyone the right to object to direct marketing at any time, and an
-- objection must be honoured in full (docs/overview.md "Consent"):
--   * the CRM's flag of the channel decides when it states one: true allows, false refuses; a customer
--     merged from several CRM records is refused when any of them says false;
--   * an e-mail unsubscribe refuses e-mail whatever the CRM's flag, unless the CRM recorded a consent
--     (consent_updated_at) on a later day: a CRM often re-exports a stale flag it never learnt was withdrawn;
--   * without any statement (a guest buyer, an empty flag) the var consent_when_unknown decides, per
--     channel; it assumes no consent by default.
{%- set unknown = var('consent_when_unknown') %}
with

customers as (
    select customer_id from {{ ref('int_customers') }}
),

crm_customers as (
    select * from {{ ref('stg_crm__customers') }}
),

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
    where key_type = 'crm_id'
),

email_unsubscribes as (
    select * from {{ ref('int_email_events_attributed') }}
    where event_type = 'unsubscribe'
        and event_date <= {{ as_of_date() }}
),

crm_consent as (
    -- 1 = consent, 0 = objection, null = no statement; min() lets any objection win
    select
        coalesce(customer_keys.customer_id, crm_customers.natural_customer_id) as customer_id,
        min(case when crm_customers.has_email_opt_in then 1 when not crm_customers.has_email_opt_in then 0 end)
            as email_flag,
        min(case when crm_customers.has_sms_opt_in then 1 when not crm_customers.has_sms_opt_in then 0 end)
            as sms_flag,
        min(case when crm_customers.has_ads_opt_in then 1 when not crm_customers.has_ads_opt_in then 0 end)
            as ads_flag,
        max(crm_customers.consent_updated_at) as consent_updated_at
    from crm_customers
    left join customer_keys on crm_customers.crm_customer_id = customer_keys.key_value
    group by coalesce(customer_keys.customer_id, crm_customers.natural_customer_id)
),

last_unsubscribes as (
    select
        customer_id,
        max(event_date) as email_unsubscribed_date
    from email_unsubscribes
    group by customer_id
),

final as (
    select
        customers.customer_id,
        case
            when last_unsubscribes.email_unsubscribed_date is not null
                and (
                    crm_consent.consent_updated_at is null
                    or last_unsubscribes.email_unsubscribed_date >= cast(crm_consent.consent_updated_at as date)
                )
                then false
            when crm_consent.email_flag is not null then crm_consent.email_flag = 1
            else {{ 'true' if unknown['email'] else 'false' }}
        end as has_email_consent,
        case
            when crm_consent.sms_flag is not null then crm_consent.sms_flag = 1
            else {{ 'true' if unknown['sms'] else 'false' }}
        end as has_sms_consent,
        case
            when crm_consent.ads_flag is not null then crm_consent.ads_flag = 1
            else {{ 'true' if unknown['ads'] else 'false' }}
        end as has_ads_consent,
        last_unsubscribes.email_unsubscribed_date,
        crm_consent.consent_updated_at
    from customers
    left join crm_consent on customers.customer_id = crm_consent.customer_id
    left join last_unsubscribes on customers.customer_id = last_unsubscribes.customer_id
)

select * from final
