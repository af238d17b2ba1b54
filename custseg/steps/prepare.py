"""The prepare task: schemas, pipeline tables and the hash key, before anything is loaded."""

from __future__ import annotations

from custseg.campaigns import campaign_rows, load_campaigns
from custseg.config import Settings
from custseg.warehouse import connect


def prepare_warehouse(settings: Settings) -> None:
    """Create schemas and pipeline tables, store the hash key where the SQL can join it, and load the
    campaigns file.

    The key (CUSTSEG_HASH_KEY) goes into `raw.pii_salt` (its historical name), bound as a parameter:
    dbt and custseg/steps/identity.py read it from there, so it is never rendered into SQL text, logs or docs.
    The campaigns file is checked first, so a wrong entry stops the run before anything is loaded.
    """
    campaigns = campaign_rows(load_campaigns(settings.campaigns_file))
    with connect(settings) as wh:
        wh.bootstrap()
        with wh.transaction():
            wh.execute("create table if not exists raw.pii_salt (pii_salt text not null)")
            wh.execute("delete from raw.pii_salt")
            wh.execute("insert into raw.pii_salt (pii_salt) values (%s)", (settings.hash_key,))
            wh.execute("delete from raw.campaigns")
            for row in campaigns:
                wh.execute(
                    "insert into raw.campaigns (campaign_id, description, target_playbook_ids, target_rfm_segments, "
                    "start_date, end_date, conversion_window_days, control_share, control_threshold) "
                    "values (%s, %s, %s, %s, %s, %s, %s, %s, %s)", row)
