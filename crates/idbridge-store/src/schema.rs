//! The diesel schema shared by both backends; it mirrors migrations/{sqlite,postgres}.
//! Only portable column types: Text, BigInt (unix seconds), Binary, Nullable.

diesel::table! {
    users (id) {
        id -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        disabled_at -> Nullable<BigInt>,
        name -> Nullable<Text>,
        picture -> Nullable<Text>,
        locale -> Nullable<Text>,
        phone_number -> Nullable<Text>,
        phone_verified_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    identities (connector_id, subject) {
        connector_id -> Text,
        subject -> Text,
        user_id -> Text,
        link_scope -> Nullable<Text>,
        link_key -> Nullable<Text>,
        profile -> Text,
        upstream_tokens -> Nullable<Binary>,
        created_at -> BigInt,
        last_login_at -> BigInt,
    }
}

diesel::table! {
    link_keys (link_scope, link_key) {
        link_scope -> Text,
        link_key -> Text,
        user_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    clients (id) {
        id -> Text,
        secret_hash -> Nullable<Text>,
        metadata -> Text,
        created_at -> BigInt,
        previous_secret_hash -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    auth_requests (id) {
        id -> Text,
        client_id -> Text,
        payload -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    upstream_flows (state) {
        state -> Text,
        connector_id -> Text,
        auth_request_id -> Text,
        browser_hash -> Text,
        data -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        outcome -> Nullable<Text>,
    }
}

diesel::table! {
    authorization_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        user_id -> Text,
        payload -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        family_id -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_token_families (id) {
        id -> Text,
        client_id -> Text,
        user_id -> Text,
        scope -> Text,
        sso_session_id -> Nullable<Text>,
        payload -> Text,
        created_at -> BigInt,
        last_used_at -> BigInt,
        absolute_expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        family_id -> Text,
        created_at -> BigInt,
        used_at -> Nullable<BigInt>,
        successor_hash -> Nullable<Text>,
    }
}

diesel::table! {
    sso_sessions (id) {
        id -> Text,
        user_id -> Text,
        connector_id -> Text,
        auth_time -> BigInt,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        generation -> BigInt,
        private_key -> Binary,
        public_jwk -> Text,
        created_at -> BigInt,
        activates_at -> BigInt,
        retires_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        event -> Text,
        user_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        connector_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    app_tokens (app_key) {
        app_key -> Text,
        token -> Binary,
        expires_at -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    verification_codes (id) {
        id -> Text,
        purpose -> Text,
        channel -> Text,
        destination -> Text,
        user_id -> Nullable<Text>,
        browser_hash -> Text,
        code_hash -> Text,
        attempts -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    failure_counters (key) {
        key -> Text,
        full_at_ms -> BigInt,
    }
}

diesel::table! {
    account_emails (email) {
        email -> Text,
        user_id -> Text,
        connector_id -> Text,
        subject -> Text,
        verified_at -> BigInt,
    }
}

diesel::table! {
    consents (user_id, client_id) {
        user_id -> Text,
        client_id -> Text,
        scope -> Text,
        granted_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(identities -> users (user_id));
diesel::joinable!(consents -> users (user_id));
diesel::joinable!(account_emails -> users (user_id));
diesel::joinable!(link_keys -> users (user_id));
diesel::joinable!(refresh_tokens -> refresh_token_families (family_id));
diesel::joinable!(refresh_token_families -> users (user_id));
diesel::joinable!(sso_sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    identities,
    link_keys,
    clients,
    auth_requests,
    upstream_flows,
    authorization_codes,
    refresh_token_families,
    refresh_tokens,
    sso_sessions,
    signing_keys,
    audit_log,
    app_tokens,
    verification_codes,
    failure_counters,
    account_emails,
    consents,
);
