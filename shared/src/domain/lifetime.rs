//! A grant's schedule around its provider's documented lifetimes: when the refresher must pick a
//! token up (ahead of its access token's expiry, and before its refresh token's inactivity window
//! closes), when the grant ends however it is used, and from when that end is reported. Pure:
//! the times in, the times out.

use chrono::{DateTime, Duration, SubsecRound, Utc};

use super::provider::GrantLifetime;

/// How far ahead of each documented limit Keyport acts (installation settings). Each margin is
/// capped at half of what it is a margin of, so a short lifetime is still used before it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeMargins {
    /// Before an access token expires.
    pub refresh_lead: Duration,
    /// Before a refresh token's inactivity window closes.
    pub idle_margin: Duration,
    /// Before a grant's absolute end: from then on it is reported as ending.
    pub grant_end_warning: Duration,
}

/// What is known of a grant as it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantFacts {
    /// Now: the grant was just obtained, by an authorization or a successful refresh.
    pub written_at: DateTime<Utc>,
    /// When the person authorized it (the lineage's start).
    pub authorized_at: DateTime<Utc>,
    /// When its access token expires; `None` when the provider gave no lifetime.
    pub expires_at: Option<DateTime<Utc>>,
    pub has_refresh_token: bool,
    /// Keyport can get a new token without a person or a refresh token (an unattended grant).
    pub unattended: bool,
}

/// When a grant written with [`GrantFacts`] needs Keyport again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantSchedule {
    /// When the refresher should pick the token up; `None` keeps it out of the due index.
    pub refresh_due_at: Option<DateTime<Utc>>,
    /// When the grant dies however it is used; `None` when the provider documents no end.
    pub grant_ends_at: Option<DateTime<Utc>>,
    /// Whether the grant is inside its warning window already: report it (once per grant).
    pub grant_ending: bool,
}

impl LifetimeMargins {
    /// The schedule of a grant under `lifetime`, its end not yet reported when
    /// `!end_reported`: a grant not yet reported comes due when its warning window opens, so
    /// that the refresher notices it then even if nothing else brings it there.
    pub fn schedule(
        &self,
        facts: &GrantFacts,
        lifetime: &GrantLifetime,
        end_reported: bool,
    ) -> GrantSchedule {
        let now = facts.written_at;
        // The refresh token's limits apply only to a grant that has one.
        let refreshable = facts.has_refresh_token;
        let access_due = facts
            .expires_at
            .filter(|_| refreshable || facts.unattended)
            .map(|expiry| expiry - capped(self.refresh_lead, expiry - now));
        let idle_due = lifetime
            .refresh_token_idle_days
            .filter(|_| refreshable)
            .map(|days| {
                let window = Duration::days(i64::from(days));
                now + window - capped(self.idle_margin, window)
            });
        let grant_ends_at = lifetime
            .refresh_token_absolute_days
            .filter(|_| refreshable)
            .map(|days| facts.authorized_at + Duration::days(i64::from(days)));
        let warning_from =
            grant_ends_at.map(|ends| self.grant_end_warning_from(facts.authorized_at, ends));
        let grant_ending = warning_from.is_some_and(|from| now >= from);
        let warning_due = warning_from.filter(|_| !end_reported && !grant_ending);
        let refresh_due_at = [access_due, idle_due, warning_due]
            .into_iter()
            .flatten()
            .min();
        GrantSchedule {
            refresh_due_at,
            grant_ends_at,
            grant_ending,
        }
    }

    /// When a grant authorized at `authorized_at` and ending at `ends_at` enters its warning
    /// window, to the second (what every store keeps of a time): a refresher that comes at the
    /// stored due time finds the window open.
    pub fn grant_end_warning_from(
        &self,
        authorized_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        (ends_at - capped(self.grant_end_warning, ends_at - authorized_at)).trunc_subsecs(0)
    }
}

/// `margin`, but at most half of `span` (and never negative).
fn capped(margin: Duration, span: Duration) -> Duration {
    margin.min(span / 2).max(Duration::zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn margins() -> LifetimeMargins {
        LifetimeMargins {
            refresh_lead: Duration::minutes(5),
            idle_margin: Duration::days(7),
            grant_end_warning: Duration::days(14),
        }
    }

    fn lifetime(idle: Option<u32>, absolute: Option<u32>) -> GrantLifetime {
        GrantLifetime {
            access_token_seconds: None,
            refresh_token_idle_days: idle,
            refresh_token_absolute_days: absolute,
        }
    }

    fn facts(expires_in: Option<Duration>) -> GrantFacts {
        let now = at("2026-03-01T12:00:00Z");
        GrantFacts {
            written_at: now,
            authorized_at: at("2026-01-01T12:00:00Z"),
            expires_at: expires_in.map(|d| now + d),
            has_refresh_token: true,
            unattended: false,
        }
    }

    #[test]
    fn without_documented_lifetimes_the_access_token_alone_sets_the_due_time() {
        let f = facts(Some(Duration::hours(1)));
        let s = margins().schedule(&f, &lifetime(None, None), false);
        assert_eq!(
            s.refresh_due_at,
            Some(f.expires_at.unwrap() - Duration::minutes(5))
        );
        assert_eq!((s.grant_ends_at, s.grant_ending), (None, false));
        // A short-lived token is picked up at half its life, not after it lapsed.
        let short = facts(Some(Duration::seconds(60)));
        let s = margins().schedule(&short, &lifetime(None, None), false);
        assert_eq!(
            s.refresh_due_at,
            Some(short.written_at + Duration::seconds(30))
        );
        // Nothing to refresh with, and no expiry: out of the due index.
        assert_eq!(
            margins()
                .schedule(&facts(None), &lifetime(None, None), false)
                .refresh_due_at,
            None
        );
    }

    #[test]
    fn an_idle_window_brings_a_long_lived_token_due_before_it_closes() {
        let idle = lifetime(Some(90), None);
        for expires_in in [None, Some(Duration::days(365))] {
            let f = facts(expires_in);
            let s = margins().schedule(&f, &idle, false);
            assert_eq!(
                s.refresh_due_at,
                Some(f.written_at + Duration::days(90 - 7)),
                "{expires_in:?}"
            );
        }
        // The access token's own due time wins when it is sooner.
        let f = facts(Some(Duration::hours(1)));
        assert_eq!(
            margins().schedule(&f, &idle, false).refresh_due_at,
            Some(f.expires_at.unwrap() - Duration::minutes(5))
        );
        // A window shorter than twice the margin keeps half of itself.
        let f = facts(None);
        assert_eq!(
            margins()
                .schedule(&f, &lifetime(Some(7), None), false)
                .refresh_due_at,
            Some(f.written_at + Duration::hours(84))
        );
    }

    #[test]
    fn a_refresh_tokens_limits_do_not_apply_without_one() {
        let mut f = facts(None);
        f.has_refresh_token = false;
        let s = margins().schedule(&f, &lifetime(Some(90), Some(365)), false);
        assert_eq!(
            s,
            GrantSchedule {
                refresh_due_at: None,
                grant_ends_at: None,
                grant_ending: false,
            }
        );
        // An unattended grant is still renewed ahead of its expiry.
        f.unattended = true;
        f.expires_at = Some(f.written_at + Duration::hours(1));
        let s = margins().schedule(&f, &lifetime(Some(90), Some(365)), false);
        assert_eq!(s.refresh_due_at, Some(f.written_at + Duration::minutes(55)));
        assert_eq!(s.grant_ends_at, None);
    }

    #[test]
    fn an_absolute_end_is_counted_from_the_authorization_and_comes_due_when_its_warning_opens() {
        let f = facts(None);
        let s = margins().schedule(&f, &lifetime(None, Some(365)), false);
        let ends = f.authorized_at + Duration::days(365);
        assert_eq!(s.grant_ends_at, Some(ends));
        assert!(!s.grant_ending);
        assert_eq!(s.refresh_due_at, Some(ends - Duration::days(14)));
        // Once reported, the warning brings it due no more.
        let reported = margins().schedule(&f, &lifetime(None, Some(365)), true);
        assert_eq!(reported.refresh_due_at, None);
        // With an idle window too, whichever is sooner.
        let both = margins().schedule(&f, &lifetime(Some(90), Some(365)), false);
        assert_eq!(both.refresh_due_at, Some(f.written_at + Duration::days(83)));
    }

    #[test]
    fn a_grant_inside_its_warning_window_is_ending() {
        let mut f = facts(Some(Duration::hours(1)));
        // Authorized 355 days ago: 10 days left of 365, inside the 14-day window.
        f.authorized_at = f.written_at - Duration::days(355);
        let s = margins().schedule(&f, &lifetime(Some(90), Some(365)), false);
        assert!(s.grant_ending);
        assert_eq!(s.grant_ends_at, Some(f.written_at + Duration::days(10)));
        // Ending is not a reason to come due again: the access token's time stands.
        assert_eq!(
            s.refresh_due_at,
            Some(f.expires_at.unwrap() - Duration::minutes(5))
        );
        // One day before the window, it is not.
        f.authorized_at = f.written_at - Duration::days(350);
        assert!(
            !margins()
                .schedule(&f, &lifetime(None, Some(365)), false)
                .grant_ending
        );
    }

    #[test]
    fn a_short_grant_is_warned_at_half_its_life() {
        let m = margins();
        let authorized = at("2026-01-01T00:00:00.750Z");
        let ends = authorized + Duration::days(7);
        assert_eq!(
            m.grant_end_warning_from(authorized, ends),
            at("2026-01-04T12:00:00Z"),
            "half of seven days, to the second"
        );
        assert_eq!(
            m.grant_end_warning_from(authorized, authorized + Duration::days(365)),
            at("2026-12-18T00:00:00Z")
        );
    }
}
