//! Status codes (RFC 3261 §7.2, §21): three digits, 100 to 699.

use std::fmt;

/// A SIP status code, guaranteed to be within `100..=699`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 100 Trying
    pub const TRYING: StatusCode = StatusCode(100);
    /// 180 Ringing
    pub const RINGING: StatusCode = StatusCode(180);
    /// 183 Session Progress
    pub const SESSION_PROGRESS: StatusCode = StatusCode(183);
    /// 200 OK
    pub const OK: StatusCode = StatusCode(200);
    /// 400 Bad Request
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 404 Not Found
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 408 Request Timeout
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    /// 416 Unsupported URI Scheme
    pub const UNSUPPORTED_URI_SCHEME: StatusCode = StatusCode(416);
    /// 481 Call/Transaction Does Not Exist
    pub const CALL_DOES_NOT_EXIST: StatusCode = StatusCode(481);
    /// 482 Loop Detected
    pub const LOOP_DETECTED: StatusCode = StatusCode(482);
    /// 483 Too Many Hops
    pub const TOO_MANY_HOPS: StatusCode = StatusCode(483);
    /// 486 Busy Here
    pub const BUSY_HERE: StatusCode = StatusCode(486);
    /// 487 Request Terminated
    pub const REQUEST_TERMINATED: StatusCode = StatusCode(487);
    /// 500 Server Internal Error
    pub const SERVER_INTERNAL_ERROR: StatusCode = StatusCode(500);
    /// 501 Not Implemented
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    /// 503 Service Unavailable
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    /// 505 Version Not Supported
    pub const VERSION_NOT_SUPPORTED: StatusCode = StatusCode(505);

    /// Returns `None` outside `100..=699`.
    pub const fn new(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 699 {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx: provisional (RFC 3261 §7.2).
    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx..6xx.
    pub const fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// The RFC 3261 §21 reason phrase for well-known codes.
    pub fn canonical_reason(self) -> Option<&'static str> {
        Some(match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            200 => "OK",
            202 => "Accepted",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            305 => "Use Proxy",
            380 => "Alternative Service",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            410 => "Gone",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            420 => "Bad Extension",
            421 => "Extension Required",
            423 => "Interval Too Brief",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            484 => "Address Incomplete",
            485 => "Ambiguous",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            493 => "Undecipherable",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            513 => "Message Too Large",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            _ => return None,
        })
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range() {
        assert!(StatusCode::new(99).is_none());
        assert!(StatusCode::new(700).is_none());
        assert_eq!(StatusCode::new(699).map(StatusCode::as_u16), Some(699));
        assert!(StatusCode::TRYING.is_provisional());
        assert!(StatusCode::OK.is_success() && StatusCode::OK.is_final());
        assert_eq!(
            StatusCode::VERSION_NOT_SUPPORTED.canonical_reason(),
            Some("Version Not Supported")
        );
    }
}
