"""A checkpoint save in one round trip on PostgreSQL: the function `cpf_save_checkpoint`.

The general save (core/service/checkpoints.py `_save_tx`) is about ten statements, each
a round trip: the key lookup, the rate-limit count, BEGIN, the workflow's row lock, the
step lookup, the insert, the head update, the webhooks, COMMIT. With replicas, clients
and PostgreSQL sharing a few cores, the statements' CPU (the server's per-statement
work and the client's) bounds the throughput. This function does the common case in
one statement, in its own transaction (autocommit), with the same locks and the same
outcome:

- the API key (unknown, revoked, expired, inactive account: `auth`, nothing done);
- the key's rate-limit window (the upsert of ratelimit.py: `rate` with the seconds
  left when refused; the count is kept either way);
- the workflow's row lock, then the same checks as the general save: a step that
  exists, an If-Match, an expired workflow, a cpf run's workflow all answer
  `fallback` without writing (the caller runs the general save, which has every
  answer: 409s, the idempotent re-save, expiry); a step that exists with this very
  request's etag is this request committed by an attempt whose answer was lost: `ok`;
- the diff: the caller computed it against the head it knows (`p_head_id`, `p_head_etag`,
  None for a new workflow); if the head is another one, `moved` returns it (its state
  as JSON text) and nothing is written: the caller diffs again and calls again;
- the insert, the head/total/expiry update (created_at never before the workflow's
  last activity, so the head stays its newest checkpoint whatever the replicas'
  clocks), the agent's last_seen_at and the checkpoint.saved outbox rows.

Created by Alembic revision 0006 and, on a new PostgreSQL store, with the tables (the
DDL listener in tables.py). SQLite keeps the general save (its writes are serialized
in-process and cost no round trips). A later change of the function is a new
revision that runs `CREATE OR REPLACE` again.
"""

from __future__ import annotations

# No '%' and no ':name' in the text: it is run as driver SQL (psycopg) and as DDL.
CREATE_SAVE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION cpf_save_checkpoint(
    p_key_hash text, p_now text, p_expires text, p_ttl double precision,
    p_rate_limit integer, p_rate_window double precision,
    p_checkpoint_id text, p_workflow_id text, p_step bigint, p_label text,
    p_state text, p_metadata text, p_agent_id text, p_etag text, p_diff text,
    p_size integer, p_if_match text, p_head_id bigint, p_head_etag text, p_salt text,
    OUT o_status text, OUT o_account text, OUT o_key_id text, OUT o_retry_after double precision,
    OUT o_id bigint, OUT o_created_at text, OUT o_expires_at text, OUT o_enqueued boolean,
    OUT o_head_id bigint, OUT o_head_etag text, OUT o_head_state text)
LANGUAGE plpgsql AS $fn$
DECLARE
    k record;
    wf record;
    cp record;
    hook record;
    v_found boolean;
    v_now text := p_now;
    v_exp text := p_expires;
    v_epoch double precision;
    v_hits integer;
    v_start double precision;
    v_data json;
    v_n integer := 0;
BEGIN
    o_enqueued := false;
    SELECT a.key_id, a.account, a.revoked_at, a.expires_at, c.status INTO k
      FROM svc_api_keys a LEFT JOIN svc_accounts c ON c.name = a.account
     WHERE a.key_hash = p_key_hash;
    IF NOT FOUND OR k.revoked_at IS NOT NULL
       OR (k.expires_at IS NOT NULL AND k.expires_at COLLATE "C" <= p_now)
       OR coalesce(k.status, 'active') <> 'active' THEN
        o_status := 'auth';
        RETURN;
    END IF;
    o_account := k.account;
    o_key_id := k.key_id;

    IF p_rate_limit > 0 THEN
        v_epoch := extract(epoch FROM statement_timestamp());
        INSERT INTO svc_rate_windows AS w (bucket, window_start, hits)
        VALUES (k.key_id, v_epoch, 1)
        ON CONFLICT (bucket) DO UPDATE SET
            hits = CASE WHEN w.window_start <= v_epoch - p_rate_window THEN 1
                        WHEN w.hits <= p_rate_limit THEN w.hits + 1
                        ELSE w.hits END,
            window_start = CASE WHEN w.window_start <= v_epoch - p_rate_window THEN v_epoch
                                ELSE w.window_start END
        RETURNING w.hits, w.window_start INTO v_hits, v_start;
        IF v_hits > p_rate_limit THEN
            o_status := 'rate';
            o_retry_after := v_start + p_rate_window - v_epoch;
            RETURN;
        END IF;
    END IF;

    IF k.account = 'local' AND EXISTS (SELECT 1 FROM runs r WHERE r.run_id = p_workflow_id) THEN
        o_status := 'fallback';
        RETURN;
    END IF;

    SELECT w.id, w.head_id, w.head_etag, w.last_activity_at, w.expires_at INTO wf
      FROM svc_workflows w
     WHERE w.account = k.account AND w.workflow_id = p_workflow_id
       FOR UPDATE;
    v_found := FOUND;
    IF v_found AND wf.expires_at IS NOT NULL AND wf.expires_at COLLATE "C" <= p_now THEN
        o_status := 'fallback';
        RETURN;
    END IF;

    SELECT c.id, c.etag, c.created_at, c.expires_at INTO cp
      FROM checkpoints c
     WHERE c.account = k.account AND c.workflow_id = p_workflow_id AND c.step = p_step;
    IF FOUND THEN
        IF cp.etag = p_etag THEN
            o_status := 'ok';
            o_id := cp.id;
            o_created_at := cp.created_at;
            o_expires_at := cp.expires_at;
            RETURN;
        END IF;
        o_status := 'fallback';
        RETURN;
    END IF;
    IF p_if_match IS NOT NULL AND (NOT v_found OR wf.head_etag IS DISTINCT FROM p_if_match) THEN
        o_status := 'fallback';
        RETURN;
    END IF;
    IF v_found AND (wf.head_id IS DISTINCT FROM p_head_id
                    OR wf.head_etag IS DISTINCT FROM p_head_etag) THEN
        o_status := 'moved';
        o_head_id := wf.head_id;
        o_head_etag := wf.head_etag;
        SELECT c.state::text INTO o_head_state FROM checkpoints c WHERE c.id = wf.head_id;
        RETURN;
    END IF;
    IF NOT v_found AND p_head_id IS NOT NULL THEN
        o_status := 'moved';
        RETURN;
    END IF;

    IF v_found AND wf.last_activity_at COLLATE "C" > v_now THEN
        -- Another replica's clock is ahead: the new head is still the newest checkpoint.
        v_now := wf.last_activity_at;
        v_exp := to_char(
            (v_now::timestamptz + p_ttl * interval '1 second') AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"');
    END IF;

    IF v_found THEN
        INSERT INTO checkpoints (checkpoint_id, account, workflow_id, run_id, step, label, state,
                                 metadata, etag, diff_from_previous, size_bytes, created_at,
                                 expires_at)
        VALUES (p_checkpoint_id, k.account, p_workflow_id, NULL, p_step, p_label, p_state::json,
                p_metadata::json, p_etag, p_diff::json, p_size, v_now, v_exp)
        RETURNING id INTO o_id;
        UPDATE svc_workflows w
           SET head_id = o_id, head_step = p_step, head_etag = p_etag, total = w.total + 1,
               last_activity_at = v_now, expires_at = v_exp,
               min_expires_at = CASE WHEN w.min_expires_at IS NULL
                                       OR w.min_expires_at COLLATE "C" > v_exp
                                     THEN v_exp ELSE w.min_expires_at END
         WHERE w.id = wf.id;
    ELSE
        BEGIN
            INSERT INTO checkpoints (checkpoint_id, account, workflow_id, run_id, step, label,
                                     state, metadata, etag, diff_from_previous, size_bytes,
                                     created_at, expires_at)
            VALUES (p_checkpoint_id, k.account, p_workflow_id, NULL, p_step, p_label,
                    p_state::json, p_metadata::json, p_etag, p_diff::json, p_size, v_now, v_exp)
            RETURNING id INTO o_id;
            INSERT INTO svc_workflows (account, workflow_id, head_id, head_step, head_etag, total,
                                       started_at, last_activity_at, expires_at, min_expires_at)
            VALUES (k.account, p_workflow_id, o_id, p_step, p_etag, 1, v_now, v_now, v_exp,
                    v_exp);
        EXCEPTION WHEN unique_violation THEN
            -- A concurrent first save of this workflow: decided again against it.
            o_id := NULL;
            o_status := 'moved';
            RETURN;
        END;
    END IF;

    IF p_agent_id IS NOT NULL THEN
        UPDATE svc_agents SET last_seen_at = v_now
         WHERE account = k.account AND agent_id = p_agent_id;
    END IF;

    FOR hook IN SELECT h.webhook_id, h.events FROM svc_webhooks h WHERE h.account = k.account
    LOOP
        IF hook.events IS NOT NULL AND hook.events::jsonb @> '["checkpoint.saved"]'::jsonb THEN
            IF v_data IS NULL THEN
                v_data := json_build_object(
                    'workflow_id', p_workflow_id, 'checkpoint_id', p_checkpoint_id,
                    'step', p_step, 'etag', p_etag, 'label', p_label,
                    'created_at', left(v_now, 23) || 'Z');
            END IF;
            v_n := v_n + 1;
            INSERT INTO svc_webhook_deliveries (delivery_id, webhook_id, account, event, data,
                                                status, attempts, next_attempt_at, created_at,
                                                updated_at)
            VALUES ('dlv_' || left(md5(p_salt || '.' || v_n), 24), hook.webhook_id, k.account,
                    'checkpoint.saved', v_data, 'pending', 0, v_now, v_now, v_now);
        END IF;
    END LOOP;
    o_enqueued := v_n > 0;
    o_status := 'ok';
    o_created_at := v_now;
    o_expires_at := v_exp;
END
$fn$
"""

DROP_SAVE_FUNCTION = "DROP FUNCTION IF EXISTS cpf_save_checkpoint"

# The argument types spelled out: one prepared statement whatever Python's int sizes.
_ARG_TYPES = [
    "text",
    "text",
    "text",
    "float8",
    "int4",
    "float8",
    "text",
    "text",
    "int8",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int4",
    "text",
    "int8",
    "text",
    "text",
]


def call_statement(function: str, types: list[str]) -> str:
    """One call of `function`, its arguments typed (one prepared statement)."""
    return f"SELECT * FROM {function}(" + ", ".join(f"%s::{t}" for t in types) + ")"


def batch_statement(function: str, types: list[str]) -> str:
    """Calls of `function`, one per element of a JSON array of argument lists (one
    parameter: a batch costs the driver one string), one after the other in one
    statement, so in one transaction; the answers in the same order. Whatever the
    batch's size, one prepared statement."""
    args = ", ".join(f"(a.v->>{i})::{t}" for i, t in enumerate(types))
    return (
        "SELECT r.* FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS a(v, ord) "
        f"CROSS JOIN LATERAL {function}({args}) AS r ORDER BY a.ord"
    )


CALL_SAVE_FUNCTION = call_statement("cpf_save_checkpoint", _ARG_TYPES)
BATCH_SAVE_FUNCTION = batch_statement("cpf_save_checkpoint", _ARG_TYPES)
