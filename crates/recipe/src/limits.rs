//! The bounds of a generation's parameters, declared once: the engine's own, narrowed by a model
//! (its smallest size and size step) and by a server's configuration, and sent to the UI and to
//! cloud clients as they are.

use serde::{Deserialize, Serialize};

/// What a generation request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    /// Smallest width or height in pixels.
    pub min_side: u32,
    /// Largest width or height in pixels.
    pub max_side: u32,
    /// Width and height must be multiples of this (the VAE's pixels per latent cell).
    pub side_step: u32,
    /// Most denoising steps.
    pub max_steps: u32,
    /// Most images per request.
    pub max_count: u32,
    /// Largest guidance scale.
    pub max_guidance: f64,
    /// Longest prompt in characters, where one is enforced (servers).
    #[serde(default)]
    pub max_prompt_chars: Option<u32>,
}

impl Limits {
    /// Checks a request's numbers; the error names the field, the bound and the value.
    pub fn check(
        &self,
        width: u32,
        height: u32,
        steps: u32,
        count: u32,
        guidance: f64,
    ) -> Result<(), String> {
        if steps == 0 || steps > self.max_steps {
            return Err(format!(
                "steps must be between 1 and {} (got {steps})",
                self.max_steps
            ));
        }
        if !guidance.is_finite() || !(0.0..=self.max_guidance).contains(&guidance) {
            return Err(format!(
                "guidance must be between 0 and {} (got {guidance})",
                self.max_guidance
            ));
        }
        for (name, v) in [("width", width), ("height", height)] {
            if v < self.min_side || v > self.max_side || v % self.side_step != 0 {
                return Err(format!(
                    "{name} must be a multiple of {} between {} and {} (got {v})",
                    self.side_step, self.min_side, self.max_side
                ));
            }
        }
        if count == 0 || count > self.max_count {
            return Err(format!(
                "count must be between 1 and {} (got {count})",
                self.max_count
            ));
        }
        Ok(())
    }

    /// Checks a prompt's length against [`Self::max_prompt_chars`]; `name` labels it in the error.
    pub fn check_prompt(&self, name: &str, text: &str) -> Result<(), String> {
        let Some(max) = self.max_prompt_chars else {
            return Ok(());
        };
        let chars = text.chars().count();
        if chars > max as usize {
            return Err(format!("{name} is {chars} characters; the limit is {max}"));
        }
        Ok(())
    }

    /// The tighter of `self` and `other` on every bound (a model within the engine, a server's
    /// configuration within its model). The size step becomes a multiple of both, and the
    /// smallest side a multiple of that step.
    pub fn narrowed(&self, other: &Limits) -> Limits {
        let step = lcm(self.side_step, other.side_step);
        let min_side = self.min_side.max(other.min_side).div_ceil(step) * step;
        Limits {
            min_side,
            max_side: self.max_side.min(other.max_side),
            side_step: step,
            max_steps: self.max_steps.min(other.max_steps),
            max_count: self.max_count.min(other.max_count),
            max_guidance: self.max_guidance.min(other.max_guidance),
            max_prompt_chars: match (self.max_prompt_chars, other.max_prompt_chars) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

fn lcm(a: u32, b: u32) -> u32 {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let (a, b) = (a.max(1), b.max(1));
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDE: Limits = Limits {
        min_side: 8,
        max_side: 2048,
        side_step: 8,
        max_steps: 150,
        max_count: 16,
        max_guidance: 30.0,
        max_prompt_chars: None,
    };

    #[test]
    fn checks_name_the_field_and_the_bound() {
        assert!(WIDE.check(512, 512, 30, 1, 7.5).is_ok());
        let cases = [
            ((520, 512, 30, 1, 7.5), None),
            (
                (513, 512, 30, 1, 7.5),
                Some("width must be a multiple of 8"),
            ),
            ((512, 4096, 30, 1, 7.5), Some("height must be")),
            (
                (512, 512, 0, 1, 7.5),
                Some("steps must be between 1 and 150"),
            ),
            (
                (512, 512, 30, 17, 7.5),
                Some("count must be between 1 and 16"),
            ),
            ((512, 512, 30, 1, -1.0), Some("guidance")),
            ((512, 512, 30, 1, f64::NAN), Some("guidance")),
        ];
        for ((w, h, s, c, g), expected) in cases {
            match (WIDE.check(w, h, s, c, g), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(part)) => assert!(e.contains(part), "{e}"),
                (got, want) => panic!("{w}x{h} {s} {c} {g}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn narrowing_takes_the_tighter_bound_and_keeps_steps_aligned() {
        let server = Limits {
            min_side: 0,
            max_side: 1024,
            side_step: 1,
            max_steps: 100,
            max_count: 4,
            max_guidance: 30.0,
            max_prompt_chars: Some(2000),
        };
        let model = Limits {
            min_side: 64,
            side_step: 8,
            ..WIDE
        };
        let n = WIDE.narrowed(&model).narrowed(&server);
        assert_eq!(
            (
                n.min_side,
                n.max_side,
                n.side_step,
                n.max_steps,
                n.max_count
            ),
            (64, 1024, 8, 100, 4)
        );
        assert_eq!(n.max_prompt_chars, Some(2000));
        let odd = Limits {
            min_side: 30,
            side_step: 12,
            ..WIDE
        };
        let m = WIDE.narrowed(&odd);
        assert_eq!((m.side_step, m.min_side), (24, 48));
        assert!(n.check_prompt("prompt", &"x".repeat(2001)).is_err());
        assert!(WIDE.check_prompt("prompt", &"x".repeat(5000)).is_ok());
    }
}
