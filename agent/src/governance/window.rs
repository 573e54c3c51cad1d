//! Where a budget window starts and when it resets: calendar hours, days, weeks (from Monday) and
//! months in a time zone, or rolling spans (an hour, a day, a week, 30 days). It owns the
//! arithmetic; it must not count anything.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::policy::budgets::{Align, Window};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// A window laid on the clock.
#[derive(Debug, Clone)]
pub struct Span {
    window: Window,
    align: Align,
    tz: TimeZone,
}

impl Span {
    /// `window` aligned as `align` in `tz` (UTC when `None` or unknown).
    pub fn new(window: Window, align: Align, tz: Option<&str>) -> Span {
        let tz = tz
            .and_then(|t| TimeZone::get(t).ok())
            .unwrap_or(TimeZone::UTC);
        Span { window, align, tz }
    }

    /// The length of a rolling window, ms.
    fn rolling_ms(&self) -> i64 {
        match self.window {
            Window::Hour => HOUR,
            Window::Day => DAY,
            Window::Week => 7 * DAY,
            Window::Month => 30 * DAY,
        }
    }

    /// The start of the window holding `now_ms`: spend before it does not count.
    pub fn start(&self, now_ms: i64) -> i64 {
        match self.align {
            Align::Rolling => now_ms - self.rolling_ms(),
            Align::Calendar => self.calendar(now_ms).0,
        }
    }

    /// When the calendar window holding `now_ms` ends (`None` for rolling windows, which free up
    /// as spend ages out).
    pub fn resets_at(&self, now_ms: i64) -> Option<i64> {
        match self.align {
            Align::Rolling => None,
            Align::Calendar => Some(self.calendar(now_ms).1),
        }
    }

    /// When spend made at `at_ms` leaves a rolling window.
    pub fn ages_out_at(&self, at_ms: i64) -> i64 {
        at_ms + self.rolling_ms()
    }

    fn calendar(&self, now_ms: i64) -> (i64, i64) {
        let Ok(ts) = Timestamp::from_millisecond(now_ms) else {
            return (now_ms, now_ms + HOUR);
        };
        let zdt = ts.to_zoned(self.tz.clone());
        let dt = zdt.datetime();
        let date = dt.date();
        let start = match self.window {
            Window::Hour => date.at(dt.hour(), 0, 0, 0),
            Window::Day => date.at(0, 0, 0, 0),
            Window::Week => {
                let back = i64::from(date.weekday().since(Weekday::Monday));
                date.checked_sub(back.days()).unwrap_or(date).at(0, 0, 0, 0)
            }
            Window::Month => date.first_of_month().at(0, 0, 0, 0),
        };
        let end = match self.window {
            Window::Hour => start.checked_add(1.hour()),
            Window::Day => start.checked_add(1.day()),
            Window::Week => start.checked_add(1.week()),
            Window::Month => start.checked_add(1.month()),
        }
        .unwrap_or(start);
        let ms = |d: jiff::civil::DateTime| {
            d.to_zoned(self.tz.clone())
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(now_ms)
        };
        (ms(start), ms(end))
    }

    /// `ms` as RFC 3339 in the window's time zone, for messages.
    pub fn show(&self, ms: i64) -> String {
        Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned(self.tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_else(|_| ms.to_string())
    }

    /// The window's name.
    pub fn name(&self) -> &'static str {
        match self.window {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn calendar_windows_follow_the_time_zone() {
        let day = Span::new(Window::Day, Align::Calendar, Some("Europe/Berlin"));
        // 23:30 UTC on 1 Dec is 00:30 on 2 Dec in Berlin: that day began at 23:00 UTC.
        let now = ms("2026-12-01T23:30:00Z");
        assert_eq!(day.start(now), ms("2026-12-01T23:00:00Z"));
        assert_eq!(day.resets_at(now), Some(ms("2026-12-02T23:00:00Z")));
        assert_eq!(day.show(day.start(now)), "2026-12-02T00:00:00+01:00");
        let month = Span::new(Window::Month, Align::Calendar, None);
        assert_eq!(
            month.start(ms("2026-02-17T10:00:00Z")),
            ms("2026-02-01T00:00:00Z")
        );
        assert_eq!(
            month.resets_at(ms("2026-02-17T10:00:00Z")),
            Some(ms("2026-03-01T00:00:00Z"))
        );
        let week = Span::new(Window::Week, Align::Calendar, None);
        // 2026-12-03 is a Thursday; its week began on Monday 30 November.
        assert_eq!(
            week.start(ms("2026-12-03T12:00:00Z")),
            ms("2026-11-30T00:00:00Z")
        );
        let hour = Span::new(Window::Hour, Align::Calendar, Some("Asia/Kolkata"));
        // India is 5:30 ahead of UTC: 10:20 UTC is 15:50 there, in the hour that began 09:30 UTC.
        assert_eq!(
            hour.start(ms("2026-12-01T10:20:00Z")),
            ms("2026-12-01T09:30:00Z")
        );
    }

    #[test]
    fn a_spring_forward_day_is_23_hours_and_rolling_windows_slide() {
        let day = Span::new(Window::Day, Align::Calendar, Some("Europe/Berlin"));
        let now = ms("2026-03-29T12:00:00Z");
        let (start, end) = (day.start(now), day.resets_at(now).unwrap());
        assert_eq!(end - start, 23 * HOUR);
        let rolling = Span::new(Window::Hour, Align::Rolling, None);
        assert_eq!(rolling.start(now), now - HOUR);
        assert_eq!(rolling.resets_at(now), None);
    }
}
