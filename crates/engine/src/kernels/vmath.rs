//! Elementwise math over `f32` slices, written so the compiler vectorises it: `exp`, SiLU and
//! the exact (erf) GELU. Each entry point runs an AVX-512 or AVX2+FMA build of the same loop
//! when the CPU has those (checked at run time, `dispatch!`), and the baseline build otherwise.
//!
//! The approximations are within a few ulps of libm's in the ranges a network sees (relative
//! error of `exp` below 2e-7; absolute error of `erf` below 2e-7), far inside the engine's
//! parity tolerances.

/// Below this, `exp` is 0 in f32 for every purpose here (e⁻⁸⁷ ≈ 1.6e-38).
const EXP_LOW: f32 = -87.0;
/// Above this, `exp` overflows f32.
const EXP_HIGH: f32 = 88.0;
/// Adding then subtracting 1.5·2²³ rounds an f32 of magnitude < 2²² to the nearest integer,
/// which leaves the integer in the low bits of the sum: no `round` call, so it vectorises.
const ROUNDER: f32 = 12_582_912.0;

/// eˣ for one value: x = n·ln2 + r with |r| ≤ ln2/2, eʳ by a degree-6 polynomial (Cephes'
/// `expf` coefficients), 2ⁿ by building the float's exponent bits.
#[inline(always)]
fn exp1(x: f32) -> f32 {
    // Comparisons rather than `f32::clamp`, whose NaN handling keeps the loop scalar.
    let clamped = if x < EXP_LOW { EXP_LOW } else { x };
    let clamped = if clamped > EXP_HIGH {
        EXP_HIGH
    } else {
        clamped
    };
    let t = clamped * std::f32::consts::LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    let r = clamped - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    let bits = (t.to_bits() as i32).wrapping_sub(ROUNDER.to_bits() as i32);
    let scale = f32::from_bits(((bits + 127) << 23) as u32);
    let value = y * scale;
    if x < EXP_LOW {
        0.0
    } else {
        value
    }
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
#[inline(always)]
fn erf1(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let p = 1.061_405_4f32;
    let p = p.mul_add(t, -1.453_152);
    let p = p.mul_add(t, 1.421_413_8);
    let p = p.mul_add(t, -0.284_496_74);
    let p = p.mul_add(t, 0.254_829_6);
    let y = 1.0 - p * t * exp1(-a * a);
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// x·sigmoid(x).
#[inline(always)]
fn silu1(x: f32) -> f32 {
    x / (1.0 + exp1(-x))
}

/// The exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)).
#[inline(always)]
fn gelu1(x: f32) -> f32 {
    0.5 * x * (1.0 + erf1(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn exp_generic(xs: &mut [f32]) {
    for x in xs {
        *x = exp1(*x);
    }
}

#[inline(always)]
fn exp_sum_generic(xs: &mut [f32], shift: f32, sum: &mut f32) {
    // Sixteen running sums so the additions vectorise (a single one would be a serial chain).
    let mut acc = [0f32; 16];
    let mut chunks = xs.chunks_exact_mut(16);
    for chunk in &mut chunks {
        for (x, a) in chunk.iter_mut().zip(acc.iter_mut()) {
            *x = exp1(*x - shift);
            *a += *x;
        }
    }
    for x in chunks.into_remainder() {
        *x = exp1(*x - shift);
        acc[0] += *x;
    }
    *sum = acc.iter().sum();
}

#[inline(always)]
fn max_generic(xs: &[f32], max: &mut f32) {
    // Sixteen running maxima (vector lanes); `>` rather than `f32::max`, whose NaN rules keep
    // the loop scalar.
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact(16);
    for chunk in &mut chunks {
        for (&x, a) in chunk.iter().zip(acc.iter_mut()) {
            *a = if x > *a { x } else { *a };
        }
    }
    for &x in chunks.remainder() {
        acc[0] = if x > acc[0] { x } else { acc[0] };
    }
    *max = acc
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
}

#[inline(always)]
fn geglu_generic(gate_in: &[f32], value: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(value).zip(gate_in) {
        *o = v * gelu1(g);
    }
}

#[inline(always)]
fn center_scale_silu_generic(xs: &mut [f32], center: f32, scale: f32, shift: f32, silu: bool) {
    if silu {
        for x in xs {
            *x = silu1((*x - center).mul_add(scale, shift));
        }
    } else {
        for x in xs {
            *x = (*x - center).mul_add(scale, shift);
        }
    }
}

dispatch!(exp_in_place, exp_generic, (xs: &mut [f32]));
dispatch!(exp_sum_in_place, exp_sum_generic, (xs: &mut [f32], shift: f32, sum: &mut f32));
dispatch!(max_into, max_generic, (xs: &[f32], max: &mut f32));
dispatch!(geglu_into, geglu_generic, (gate_in: &[f32], value: &[f32], out: &mut [f32]));
dispatch!(
    center_scale_silu_in_place,
    center_scale_silu_generic,
    (xs: &mut [f32], center: f32, scale: f32, shift: f32, silu: bool)
);

/// The largest value of `xs` (−∞ when empty).
pub fn max(xs: &[f32]) -> f32 {
    let mut m = f32::NEG_INFINITY;
    max_into(xs, &mut m);
    m
}

/// eˣ − shift over `xs` in place, returning the sum of the results (a softmax row's
/// normaliser).
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    let mut sum = 0.0;
    exp_sum_in_place(xs, shift, &mut sum);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Vec<f32> {
        (-4000..=4000).map(|i| i as f32 * 0.025).collect()
    }

    #[test]
    fn exp_matches_libm() {
        let xs: Vec<f32> = (-9000..=8800).map(|i| i as f32 * 0.01).collect();
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            let rel = ((y as f64 - want) / want.max(1e-30)).abs();
            assert!(
                x < EXP_LOW || rel < 2e-7,
                "exp({x}) = {y}, libm {want} (rel {rel})"
            );
        }
        let mut edge = vec![-1000.0, -87.5, f32::NEG_INFINITY];
        exp_in_place(&mut edge);
        assert_eq!(edge, vec![0.0, 0.0, 0.0]);
        // The baseline build (what CPUs without AVX2 run) computes the same values.
        let mut baseline = xs.clone();
        exp_generic(&mut baseline);
        assert_eq!(baseline, ys);
    }

    #[test]
    fn max_finds_the_largest_value_anywhere() {
        for n in [0, 1, 15, 16, 17, 100] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32).sin() * 10.0)
                .collect();
            let want = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), want, "{n} values");
        }
    }

    #[test]
    fn exp_sum_is_the_sum_of_the_shifted_exps() {
        let mut xs: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let want: f64 = xs.iter().map(|&x| ((x - 3.0) as f64).exp()).sum();
        let got = exp_shifted_sum(&mut xs, 3.0);
        assert!(((got as f64 - want) / want).abs() < 1e-6, "{got} vs {want}");
        assert!((xs[10] as f64 - ((10.0f32 * 0.37).sin() * 5.0 - 3.0).exp() as f64).abs() < 1e-6);
    }

    #[test]
    fn silu_and_gelu_match_their_definitions() {
        let xs = grid();
        let mut silu = xs.clone();
        center_scale_silu_in_place(&mut silu, 0.0, 1.0, 0.0, true);
        let ones = vec![1.0; xs.len()];
        let mut gelu = vec![0.0; xs.len()];
        geglu_into(&xs, &ones, &mut gelu);
        for ((&x, &s), &g) in xs.iter().zip(&silu).zip(&gelu) {
            let x64 = x as f64;
            let want_silu = x64 / (1.0 + (-x64).exp());
            assert!(
                (s as f64 - want_silu).abs() < 1e-6 * x64.abs().max(1.0),
                "silu({x})"
            );
            let want_gelu = 0.5 * x64 * (1.0 + erf64(x64 / 2f64.sqrt()));
            assert!(
                (g as f64 - want_gelu).abs() < 1e-6 * x64.abs().max(1.0),
                "gelu({x})"
            );
        }
    }

    /// erf by its Taylor series (|x| ≤ 3) or asymptotic continued fraction, in f64: an
    /// independent reference for the f32 approximation.
    fn erf64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) ≈ e^{-x²}/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − …); beyond 3 erf is within 2e-5
            // of ±1 and the series below is exact to f64 rounding.
            let a = x.abs();
            let mut term = 1.0;
            let mut sum = 1.0;
            for n in 1..8 {
                term *= -((2 * n - 1) as f64) / (2.0 * a * a);
                sum += term;
            }
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * sum;
            return x.signum() * (1.0 - erfc);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0;
        while term.abs() > 1e-17 || n < 5 {
            sum += term / (2 * n + 1) as f64;
            n += 1;
            term *= -x * x / n as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
