-- The Alertmanager hook's claim on an alert's action is a lease until the action is done
-- (issue 31): a call cut off mid-action, or a process that died while acting, leaves a claim
-- that a resend takes over once the lease has run out, instead of answering "repeated" for good.
-- Claims made before this migration had acted: they are done.
ALTER TABLE alert_hook_actions
    ADD COLUMN done boolean NOT NULL DEFAULT true,
    ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE alert_hook_actions ALTER COLUMN done SET DEFAULT false;
