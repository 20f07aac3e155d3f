-- Suspending an account revokes its refresh tokens: find them by user
-- without scanning every token of the deployment.
CREATE INDEX identity_refresh_tokens_user ON identity_refresh_tokens (user_id);
