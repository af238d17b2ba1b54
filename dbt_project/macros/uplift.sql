{#- The statistics of campaign_uplift (docs/overview.md "Measuring a campaign"). All 95% intervals; every
    argument is a SQL expression, and the callers cast counts to double precision first. -#}

{#- The 0.975 quantile of the standard normal: the z of a two-sided 95% interval. -#}
{% macro z_975() -%}
    1.959963984540054
{%- endmacro %}

{#- A bound of the Wilson score interval of a proportion p estimated from n trials (n > 0); sign is '-' for the
    lower bound and '+' for the upper. Unlike p +- z sqrt(p(1-p)/n) it stays inside [0, 1] and keeps its coverage
    when p is near 0 or 1 or n is small: conversion rates of a few percent in a small control group. -#}
{% macro wilson_bound(p, n, sign) -%}
    (
        ({{ p }}) + {{ z_975() }} * {{ z_975() }} / (2 * ({{ n }}))
        {{ sign }} {{ z_975() }} * sqrt(
            ({{ p }}) * (1 - ({{ p }})) / ({{ n }})
            + {{ z_975() }} * {{ z_975() }} / (4 * ({{ n }}) * ({{ n }}))
        )
    ) / (1 + {{ z_975() }} * {{ z_975() }} / ({{ n }}))
{%- endmacro %}

{#- A bound of Newcombe's hybrid score interval for the difference p1 - p2 of two independent proportions
    (Newcombe 1998, method 10), from each proportion's Wilson interval (l1, u1) and (l2, u2):
    lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2). Its coverage is
    close to 95% where the simple Wald interval's is not (small groups, rates near 0). -#}
{% macro newcombe_bound(p1, l1, u1, p2, l2, u2, sign) -%}
    {%- if sign == '-' -%}
        ({{ p1 }}) - ({{ p2 }}) - sqrt(power(({{ p1 }}) - ({{ l1 }}), 2) + power(({{ u2 }}) - ({{ p2 }}), 2))
    {%- else -%}
        ({{ p1 }}) - ({{ p2 }}) + sqrt(power(({{ u1 }}) - ({{ p1 }}), 2) + power(({{ p2 }}) - ({{ l2 }}), 2))
    {%- endif -%}
{%- endmacro %}

{#- The 0.975 quantile of Student's t with df degrees of freedom (df > 0, not necessarily whole: Welch's df),
    by the Cornish-Fisher expansion in 1/df to the fourth order (Abramowitz and Stegun 26.7.5) around z. Within
    0.13% of the exact quantile from 3 degrees of freedom and 0.75% at 2, exact in the limit; neither warehouse
    has the t distribution. The coefficients are g1..g4 of the expansion evaluated at z_975. -#}
{% macro t_quantile_975(df) -%}
    (
        {{ z_975() }}
        + 2.372271230298562 / ({{ df }})
        + 2.8224986157396112 / power({{ df }}, 2)
        + 2.555849679507722 / power({{ df }}, 3)
        + 1.5895340533938225 / power({{ df }}, 4)
    )
{%- endmacro %}
