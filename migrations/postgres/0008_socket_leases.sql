-- One socket cap per cluster: each node keeps, per user, how many upload sockets it
-- holds, under a lease of two thirds of a heartbeat renewed every third: a killed
-- node's rows stop counting within a heartbeat.
CREATE TABLE socket_leases (
    node TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    sockets BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (node, user_id)
);
CREATE INDEX socket_leases_user ON socket_leases(user_id, expires_at);
