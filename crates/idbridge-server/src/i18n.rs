//! Every string the hosted pages show, in English and Simplified Chinese: one
//! table, looked up by key. A unit test checks that every key a template or the
//! code uses is in the table.

use idbridge_core::Locale;

/// (key, English, 简体中文)
const TEXTS: &[(&str, &str, &str)] = &[
    // The chooser.
    ("choose_title", "Choose how to sign in", "选择登录方式"),
    ("choose_for", "to continue to", "登录到"),
    ("no_connectors", "No sign-in method is available for this application here.", "此应用没有可用的登录方式。"),
    ("choose_other", "Or sign in another way", "或选择其他方式"),
    ("continue_as", "Continue as", "继续使用"),
    ("return_to_app", "Return to the application", "返回应用"),
    ("try_again", "Try again", "重试"),
    // The form_post response to the app.
    ("form_post_title", "Returning to the application", "正在返回应用"),
    ("form_post_intro", "Sending you back to the application. If nothing happens, continue.", "正在返回应用。如果页面没有自动跳转，请点击继续。"),
    ("form_post_continue", "Continue", "继续"),
    // A form_post callback from the provider's site, posted again from the broker's.
    ("finishing_title", "Finishing sign-in", "正在完成登录"),
    ("finishing_intro", "Finishing your sign-in. If nothing happens, continue.", "正在完成登录。如果页面没有自动跳转，请点击继续。"),
    ("full_stop", ".", "。"),
    // Sign-out.
    ("signed_out_title", "Signed out", "已退出登录"),
    ("signed_out", "You have been signed out.", "你已退出登录。"),
    ("logout_title", "Sign out?", "退出登录？"),
    ("logout_confirm", "Sign out", "退出登录"),
    ("logout_bad_hint", "The id_token_hint is not a valid ID token from this broker.", "id_token_hint 不是本登录服务签发的有效 ID 令牌。"),
    ("logout_bad_hint_todo", "The application should send the ID token it received, or no hint.", "应用应发送它收到的 ID 令牌，或不发送此参数。"),
    ("logout_client_mismatch", "client_id does not match the id_token_hint.", "client_id 与 id_token_hint 不一致。"),
    ("logout_client_mismatch_todo", "The application must send its own ID token.", "应用必须发送它自己的 ID 令牌。"),
    ("logout_bad_redirect", "The post_logout_redirect_uri is not registered for this application.", "post_logout_redirect_uri 未在此应用中注册。"),
    ("logout_bad_redirect_todo", "You were not signed out. The application's developer must register the exact URI.", "你尚未退出登录。请应用开发者注册完全一致的地址。"),
    ("logout_db_down", "The broker's database is unavailable; you are not signed out yet.", "登录服务的数据库暂时不可用，你尚未退出登录。"),
    // Errors.
    ("error_title", "Sign-in failed", "无法登录"),
    ("unknown_client", "The sign-in request came from an application this broker does not know.", "请求来自一个未注册的应用。"),
    ("unknown_client_todo", "Contact the application's developer: its client_id is not registered with idbridge.", "请联系该应用的开发者：client_id 未在 idbridge 中注册。"),
    ("bad_redirect", "The request's redirect_uri does not exactly match one registered for this application.", "请求中的回调地址（redirect_uri）与应用注册的地址不一致。"),
    ("bad_redirect_todo", "For your safety you were not sent back. The application's developer must register the exact redirect_uri.", "为安全起见不会跳转。请应用开发者检查 redirect_uri 配置（必须完全一致）。"),
    ("expired", "This sign-in request has expired or was already used.", "这个登录请求已过期或已被使用。"),
    ("expired_todo", "Go back to the application and start signing in again.", "请回到应用重新开始登录。"),
    ("busy", "The sign-in service is too busy to finish this sign-in.", "登录服务繁忙，未能完成这次登录。"),
    ("busy_todo", "Wait a moment, then go back to the application and sign in again.", "请稍候，然后回到应用重新登录。"),
    ("db_down", "The broker's database is unavailable.", "登录服务的数据库暂时不可用。"),
    ("db_down_todo", "Retry in a moment.", "请稍后重试。"),
    ("unknown_method", "This sign-in method is not available for this application:", "此应用不能使用这种登录方式："),
    ("wrong_browser", "This step was not started in this browser.", "这一步不是在此浏览器中发起的。"),
    ("bad_input", "The link or form you followed holds a control character (an invisible character such as NUL or a line break), which is never valid here, in:", "你打开的链接或提交的表单中含有控制字符（如 NUL 或换行等不可见字符），这里不允许使用。位置："),
    ("bad_input_todo", "Go back to the application and start again from there. If this keeps happening, tell the application's developer: the link it sent you is malformed.", "请回到应用，从那里重新开始。如果一直出现，请告诉应用的开发者：它提供的链接格式有误。"),
    ("bad_input_cookie_todo", "Clear this site's cookies in your browser, then go back to the application and start again.", "请清除浏览器中本站的 Cookie，然后回到应用重新开始。"),
    ("bad_form", "The form expired or was sent from another page.", "表单已过期，或不是从本页提交的。"),
    ("bad_form_todo", "Go back, reload the page and try again.", "请返回并刷新页面后重试。"),
    ("too_many_failures", "Too many failed attempts from your network.", "失败次数过多。"),
    ("too_many_failures_todo", "Wait a minute, then try again.", "请一分钟后再试。"),
    ("body_too_large", "The form sent to this page was too large.", "提交到此页面的表单内容过大。"),
    ("body_stalled", "The form sent to this page did not arrive in time.", "提交到此页面的表单未能及时送达。"),
    ("body_broken", "The form sent to this page arrived incomplete.", "提交到此页面的表单内容不完整。"),
    ("body_refused_todo", "Go back, reload the page and send it again. If it keeps happening, check your network connection.", "请返回并刷新页面后重新提交。如果一直出现此问题，请检查网络连接。"),
    ("internal_error", "Something went wrong inside the sign-in service.", "登录服务内部出错。"),
    ("internal_error_todo", "Go back to the application and try again. If it keeps happening, tell the site's operator.", "请回到应用重试。如果一直出现，请联系网站管理员。"),
    ("page_failed", "The page could not be shown; the broker's log names the cause.", "页面无法显示；登录服务的日志中记录了原因。"),
    ("unknown_connector", "Unknown sign-in method.", "未知的登录方式。"),
    ("too_many_sign_ins", "Too many failed sign-in attempts from your network.", "你所在网络的登录失败次数过多。"),
    ("too_many_sign_ins_todo", "Wait a minute, then start again from the application.", "请一分钟后回到应用重新开始。"),
    ("sign_in_wrong_browser", "This sign-in was not started in this browser.", "这个登录不是在此浏览器中发起的。"),
    // A connector's failure (upstream_errors.rs: one pair per error kind).
    ("upstream_cancelled", "You cancelled signing in with the provider.", "你已取消登录。"),
    ("upstream_cancelled_todo", "Go back to the application to sign in again.", "可以回到应用重新登录。"),
    ("upstream_code_expired", "The sign-in code from the provider expired or was already used.", "登录凭证已失效或已被使用。"),
    ("upstream_code_expired_todo", "Go back to the application and sign in again.", "请回到应用重新登录。"),
    ("upstream_incomplete", "The sign-in provider sent you back with an incomplete answer.", "登录服务返回的信息不完整。"),
    ("upstream_incomplete_todo", "Go back to the application and sign in again.", "请回到应用重新登录。"),
    ("upstream_unverified", "The sign-in provider's answer could not be verified.", "无法验证登录服务返回的身份信息。"),
    ("upstream_unverified_todo", "Go back to the application and sign in again; if it happens again, tell the site's operator.", "请回到应用重新登录；如果再次出现，请联系网站管理员。"),
    ("upstream_not_allowed", "This account cannot be used to sign in here.", "此账号不能用于登录。"),
    ("upstream_not_allowed_todo", "Follow the provider's instructions, or choose another way to sign in.", "请按页面提示操作，或换一种方式登录。"),
    ("upstream_down", "The sign-in provider is not answering properly right now.", "登录服务暂时不可用。"),
    ("upstream_down_todo", "Wait a moment and try again.", "请稍后重试。"),
    ("connector_not_ready", "This sign-in method is starting up or cannot reach its provider right now; try again in a minute.", "这种登录方式正在启动，或暂时无法连接登录服务；请稍后再试。"),
    ("upstream_setup", "The broker's sign-in configuration has a problem, so sign-in cannot finish.", "登录配置有误，登录无法完成。"),
    ("upstream_setup_todo", "This is not your fault. Tell the site's operator; the broker's log names the cause.", "这不是你的问题。请联系网站管理员，他们可以在日志中看到原因。"),
    ("account_disabled", "This account is disabled.", "此账号已被停用。"),
    ("account_disabled_todo", "Contact the site's operator if you think this is a mistake.", "如有疑问，请联系网站管理员。"),
    // Binding a new sign-in method to an existing account (first_login = bind).
    ("bind_title", "Link to your account", "关联已有账号"),
    ("bind_intro", "This sign-in is not linked to an account yet:", "此登录方式尚未关联账号："),
    ("bind_why", "Prove that you already have an account, and it will be linked: from then on this sign-in takes you straight in.", "请先证明你已有账号，完成后即可关联：以后用这种方式可直接登录。"),
    ("bind_other_method", "Sign in another way you have used before", "用你以前用过的其他方式登录"),
    ("bind_by_code", "Or get a one-time code", "或获取一次性验证码"),
    ("bind_none_here", "No other way to prove your account is available here.", "这里没有其他可用于证明账号的方式。"),
    ("bind_proof_unknown", "That sign-in is not linked to an account either.", "这种登录方式也没有关联任何账号。"),
    ("bind_proof_unknown_todo", "Choose a method you have signed in with before, or use a one-time code.", "请选择你以前登录过的方式，或使用一次性验证码。"),
    ("bind_conflict", "This sign-in was meanwhile linked to another account, so it cannot be linked to this one.", "这种登录方式已关联到另一个账号，无法再关联到此账号。"),
    ("bind_conflict_todo", "Sign in with it directly, or ask the site's operator to move it.", "请直接用它登录，或联系网站管理员处理。"),
    ("bind_no_account", "No account could be proven with this code.", "无法用此验证码证明账号。"),
    // A verified email that an existing account has, from a connector not trusted to link by it.
    ("bind_email_match", "An account already exists for your email address", "你的邮箱地址已有账号："),
    ("bind_email_match_why", "If it is yours, prove it below and this sign-in will be linked to it: from then on it takes you straight in. We link by email only after you prove the account.", "如果是你的账号，请在下方证明，完成后此登录方式即与它关联，以后可直接登录。只有证明账号之后才会按邮箱关联。"),
    ("bind_separate_title", "Or keep them apart", "或分开使用"),
    ("bind_separate_hint", "A new, separate account is made for this sign-in; the existing account is not changed.", "将为此登录方式创建一个新的独立账号，原有账号不受影响。"),
    ("bind_separate", "Create a separate account", "创建独立账号"),
    ("separate_not_offered", "A separate account cannot be made for this sign-in here.", "这里无法为此登录方式创建独立账号。"),
    // Phone numbers and one-time codes.
    ("phone_title", "Add your phone number", "验证手机号"),
    ("phone_intro", "Verify a phone number to continue to", "请验证手机号，以继续登录"),
    ("phone_label", "Phone number", "手机号"),
    ("phone_hint", "A Chinese mobile number, or +country code and number.", "中国大陆手机号，或 +国家代码和号码。"),
    ("phone_invalid", "That does not look like a phone number. Use a mainland China mobile number (11 digits) or +country code and number.", "手机号格式不正确。请输入 11 位中国大陆手机号，或 +国家代码和号码。"),
    ("phone_taken", "This number is already verified on another account.", "此手机号已在另一个账号上验证。"),
    ("phone_taken_todo", "Sign in with that account instead, or use another number.", "请改用那个账号登录，或使用其他手机号。"),
    ("send_code", "Send code", "发送验证码"),
    ("code_title", "Enter the code", "输入验证码"),
    ("code_label", "6-digit code", "6 位验证码"),
    ("code_sent_sms", "We sent a 6-digit code by text message to", "验证码已通过短信发送至"),
    ("code_sent_wechat", "We sent a 6-digit code to your WeChat, in your chat with our Official Account.", "验证码已发送到你的微信（公众号消息）。"),
    ("code_sent_maybe", "If this number belongs to an account, we sent its owner a 6-digit code (by text message, or in WeChat).", "如果此手机号属于某个账号，我们已向其发送 6 位验证码（短信或微信）。"),
    ("code_expires", "The code works once and expires in 5 minutes.", "验证码仅可使用一次，5 分钟内有效。"),
    ("verify", "Verify", "验证"),
    ("code_again", "Send a new code or use another number", "重新发送或更换号码"),
    ("code_wrong", "That code is not right. Attempts left:", "验证码不正确。剩余次数："),
    ("code_too_many", "Too many wrong codes. Request a new code.", "错误次数过多，请重新获取验证码。"),
    ("code_expired", "The code has expired. Request a new one.", "验证码已过期，请重新获取。"),
    ("code_unknown", "This code was already used or was not sent to this browser. Request a new one.", "验证码已使用，或不是发给此浏览器的。请重新获取。"),
    ("code_throttled", "A code was sent to this number very recently. Seconds until you can ask again:", "刚刚已向此号码发送过验证码。可再次获取的剩余秒数："),
    ("code_send_failed", "The code could not be sent right now.", "验证码暂时无法发送。"),
    ("code_send_failed_todo", "Try again in a moment, or use another way.", "请稍后重试，或换一种方式。"),
    ("codes_unavailable", "One-time codes are not set up on this site.", "本站未开启验证码。"),
    // The text message with a code ({site}, {code} and {minutes} are filled in).
    ("sms_code", "{site}: your verification code is {code}. It expires in {minutes} minutes. Do not share it.", "【{site}】验证码 {code}，{minutes} 分钟内有效。请勿告诉他人。"),
    // The account page.
    ("account_title", "Your account", "我的账号"),
    ("account_sign_in", "Sign in to manage your account", "登录以管理你的账号"),
    ("account_id", "Account ID", "账号 ID"),
    ("account_phone", "Phone number", "手机号"),
    ("account_emails", "Verified email", "已验证邮箱"),
    ("account_emails_hint", "A new sign-in through a provider this site trusts, with this address verified, joins this account.", "通过本站信任的登录方式、且该邮箱已验证的新登录，会自动关联到此账号。"),
    ("account_no_phone", "none", "未验证"),
    ("account_methods", "Sign-in methods", "登录方式"),
    ("account_linked_on", "linked", "关联于"),
    ("account_last_used", "last used", "最近使用"),
    ("account_last_method", "Your only sign-in method cannot be removed.", "唯一的登录方式不能移除。"),
    ("account_link_another", "Link another sign-in method", "关联其他登录方式"),
    ("account_nothing_to_link", "No other sign-in method is available here.", "这里没有其他可关联的登录方式。"),
    ("unlink", "Unlink", "解除关联"),
    ("sign_out", "Sign out", "退出登录"),
    ("confirm_title", "Confirm it's you", "确认是你本人"),
    ("confirm_intro", "Changing your sign-in methods needs a recent sign-in. Confirm it's you, then try again.", "修改登录方式需要最近登录过。请先确认是你本人，然后重试。"),
    ("confirm_send_code", "Send me a one-time code", "给我发送验证码"),
    ("confirm_sign_in", "Sign in again", "重新登录"),
    ("back_to_account", "Back to your account", "返回我的账号"),
    ("code_sent_account", "We sent a 6-digit code to your WeChat (in your chat with our Official Account) or your phone.", "验证码已发送到你的微信（公众号消息）或手机。"),
    ("notice_confirmed", "Confirmed. You can now change your sign-in methods.", "已确认，现在可以修改登录方式。"),
    ("notice_linked", "Linked. You can now sign in this way too.", "已关联。以后也可以用这种方式登录。"),
    ("notice_already", "This sign-in method was already linked to your account.", "此登录方式已关联到你的账号。"),
    ("notice_other_account", "This sign-in method belongs to another account, so it was not linked. Sign in with it to use that account.", "此登录方式属于另一个账号，未关联。用它登录即可使用那个账号。"),
    ("notice_unlinked", "Unlinked.", "已解除关联。"),
    ("notice_revoked", "Access revoked: the application must ask you again.", "已撤销授权：该应用需要再次征得你的同意。"),
    ("account_apps", "Apps you have allowed", "你已授权的应用"),
    ("account_no_apps", "You have not allowed any application yet.", "你尚未授权任何应用。"),
    ("account_allowed_on", "Allowed on", "授权于"),
    ("revoke", "Revoke", "撤销授权"),
    // The consent page.
    ("consent_title", "Allow access?", "允许访问？"),
    ("consent_intro", "wants to use your account. If you allow it, the application gets:", "请求使用你的账号。如果你允许，该应用将获得："),
    ("consent_signed_in_as", "Signed in as", "当前账号："),
    ("consent_revocable", "You can take this back at any time on your account page.", "你可以随时在账号页面撤销授权。"),
    ("consent_allow", "Allow", "允许"),
    ("consent_deny", "Deny", "拒绝"),
    ("scope_openid", "Your account ID at this sign-in service", "你在本登录服务的账号 ID"),
    ("scope_profile", "Your name, picture and other profile details", "你的姓名、头像等个人资料"),
    ("scope_email", "Your email address", "你的邮箱地址"),
    ("scope_phone", "Your phone number", "你的手机号"),
    ("scope_offline_access", "Access while you are away: it stays signed in until you revoke it", "在你离开时继续访问：保持登录，直到你撤销授权"),
    ("notice_last", "Your only sign-in method cannot be removed.", "唯一的登录方式不能移除。"),
    ("notice_not_found", "That sign-in method is not linked to your account.", "此登录方式未关联到你的账号。"),
];

/// The text for `key` in `locale`; empty if it is missing (a test keeps that
/// from happening).
pub fn t(locale: Locale, key: &str) -> &'static str {
    TEXTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, en, zh)| match locale {
            Locale::ZhCn => *zh,
            Locale::En => *en,
        })
        .unwrap_or("")
}

/// The table in a template: `{{ t.s("key") }}`.
#[derive(Debug, Clone, Copy)]
pub struct Tr(pub Locale);

impl Tr {
    pub fn s(&self, key: &str) -> &'static str {
        t(self.0, key)
    }

    pub fn lang(&self) -> &'static str {
        self.0.tag()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_both_languages_are_filled_in() {
        for (i, (k, en, zh)) in TEXTS.iter().enumerate() {
            assert!(!en.is_empty() && !zh.is_empty(), "{k}");
            assert!(
                !TEXTS[..i].iter().any(|(other, _, _)| other == k),
                "duplicate key {k}"
            );
        }
    }

    /// The files of this crate under `dir` (`src`, `templates`), with their paths.
    fn files(dir: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut todo = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path.display().to_string(), text));
                }
            }
        }
        assert!(!out.is_empty(), "no files under {dir}");
        out
    }

    /// The source files whose page texts must come from the table: all of
    /// `src/` but this table and the demo app (an app with its own words).
    fn sources() -> Vec<(String, String)> {
        files("src")
            .into_iter()
            .filter(|(path, _)| {
                path.ends_with(".rs") && !path.ends_with("/i18n.rs") && !path.ends_with("/demo.rs")
            })
            .collect()
    }

    /// The arguments of every call `name(…)` in `src` (balanced parentheses,
    /// string literals skipped), where `name` is not the tail of a longer name.
    fn calls<'a>(src: &'a str, name: &str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let pattern = format!("{name}(");
        let mut from = 0;
        while let Some(at) = src[from..].find(&pattern) {
            let start = from + at;
            from = start + pattern.len();
            let before = src[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let (mut depth, mut in_str, mut escaped) = (1, false, false);
            for (i, c) in src[from..].char_indices() {
                match (in_str, escaped, c) {
                    (true, true, _) => escaped = false,
                    (true, false, '\\') => escaped = true,
                    (true, false, '"') => in_str = false,
                    (true, false, _) => {}
                    (false, _, '"') => in_str = true,
                    (false, _, '(') => depth += 1,
                    (false, _, ')') => {
                        depth -= 1;
                        if depth == 0 {
                            out.push(&src[from..from + i]);
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// The string literals in `args`.
    fn literals(args: &str) -> Vec<&str> {
        args.split('"').skip(1).step_by(2).collect()
    }

    /// The last of a call's arguments, trimmed (commas inside strings or
    /// parentheses do not count).
    fn last_arg(args: &str) -> &str {
        let args = args.trim_end().trim_end_matches(',');
        let (mut depth, mut in_str, mut escaped, mut cut) = (0, false, false, 0);
        for (i, c) in args.char_indices() {
            match (in_str, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_str = false,
                (true, false, _) => {}
                (false, _, '"') => in_str = true,
                (false, _, '(' | '[' | '{') => depth += 1,
                (false, _, ')' | ']' | '}') => depth -= 1,
                (false, _, ',') if depth == 0 => cut = i + 1,
                _ => {}
            }
        }
        args[cut..].trim()
    }

    /// The key a lookup `t(locale, "key")` or a label `.button(href, "key")`
    /// names: its last argument, when that is a string literal.
    fn key_arg(args: &str) -> Option<&str> {
        let last = last_arg(args);
        last.strip_prefix('"')?.strip_suffix('"')
    }

    fn is_key(key: &str) -> bool {
        TEXTS.iter().any(|(k, _, _)| *k == key)
    }

    /// Every `t.s("…")` in the templates and every key the code looks up
    /// (`t(…, "…")`, `text(…, "…")`) is a key of the table. Every file is read,
    /// so a new page is covered without being listed here.
    #[test]
    fn every_key_used_exists() {
        let mut used = 0;
        for (path, src) in files("templates") {
            for piece in src.split("t.s(\"").skip(1) {
                let key = piece.split('"').next().unwrap_or_default();
                assert!(is_key(key), "{path}: missing text key {key:?}");
                used += 1;
            }
        }
        for (path, src) in sources() {
            for name in ["t", "text", ".button"] {
                for args in calls(&src, name) {
                    if let Some(key) = key_arg(args) {
                        assert!(
                            is_key(key),
                            "{path}: missing text key {key:?} in {name}({args})"
                        );
                        used += 1;
                    }
                }
            }
        }
        assert!(used > 50, "only {used} keys found: is the scan broken?");
    }

    /// An error page says only what is in the table: every string given to
    /// `error_page`, `ErrorPage::new`, a page's `.title(…)`, or the hosted
    /// pages' typed error (`PageError::page`) is a key — never an English
    /// sentence.
    #[test]
    fn error_pages_are_built_from_keys() {
        let mut seen = 0;
        for (path, src) in sources() {
            for name in ["error_page", "ErrorPage::new", ".title", "PageError::page"] {
                for args in calls(&src, name) {
                    seen += 1;
                    for s in literals(args) {
                        assert!(
                            is_key(s),
                            "{path}: {name}({args}) shows {s:?}, which is not a text key"
                        );
                    }
                }
            }
        }
        assert!(
            seen > 20,
            "only {seen} error pages found: is the scan broken?"
        );
    }

    /// Texts are chosen by the table, not by branching on the locale in code
    /// (`if locale == Locale::ZhCn { "…" } else { "…" }`).
    #[test]
    fn no_code_branches_on_the_locale_for_a_text() {
        for (path, src) in sources() {
            for branch in [
                "Locale::ZhCn =>",
                "Locale::En =>",
                "== Locale::",
                "!= Locale::",
                "matches!(locale",
            ] {
                assert!(
                    !src.contains(branch),
                    "{path} branches on the locale ({branch}): put the text in crate::i18n"
                );
            }
        }
    }

    #[test]
    fn the_scanner_finds_calls_and_their_strings() {
        let src = r#"x; error_page(l, S::X, text(l, "a"), "b (c)"); my_error_page("z"); t(l, "k")"#;
        assert_eq!(
            calls(src, "error_page"),
            [r#"l, S::X, text(l, "a"), "b (c)""#]
        );
        assert_eq!(literals(calls(src, "error_page")[0]), ["a", "b (c)"]);
        assert_eq!(calls(src, "t"), [r#"l, "k""#]);
        assert_eq!(
            key_arg(r#"format!("/a/{b}"), "try_again""#),
            Some("try_again")
        );
        assert_eq!(key_arg(r#""q", query, MAX_TEXT"#), None);
        assert_eq!(key_arg("l,\n    \"k\",\n"), Some("k"));
    }
}
