-- Issue 31: a hook claim names the attempt holding it, so that an attempt which outlived its
-- lease (Kubernetes slower than the lease) cannot mark done or give back a claim another attempt
-- took over since.
ALTER TABLE alert_hook_actions ADD COLUMN owner text;
