//! The tray icon's pictures, drawn in code (no image files to ship or load): a filled disc whose
//! colour says the state — green up, amber degraded, blue paused, grey down — with a white ring so it
//! reads on dark and light panels. It owns the pixels; it must not decide the state.

use crate::model::State;

/// Icon size in pixels (panels scale it).
pub const SIZE: u32 = 32;

/// The colour of each state, RGB (distinct and saturated so people, and the screenshot test, tell
/// them apart).
pub fn colour(state: &State) -> [u8; 3] {
    match state {
        State::Up => [0x1e, 0xb4, 0x3c],
        State::Degraded(_) => [0xf0, 0xa0, 0x00],
        State::Paused(_) => [0x28, 0x64, 0xdc],
        State::Down(_) => [0x80, 0x80, 0x80],
    }
}

/// RGBA pixels, row by row, of the icon for `state`.
pub fn rgba(state: &State) -> Vec<u8> {
    let [r, g, b] = colour(state);
    let c = (SIZE as f32 - 1.0) / 2.0;
    let outer = SIZE as f32 / 2.0 - 0.5;
    let ring = outer - 2.5;
    let mut px = Vec::with_capacity((SIZE * SIZE * 4) as usize);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let d = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
            let p = if d <= ring {
                [r, g, b, 0xff]
            } else if d <= outer {
                [0xff, 0xff, 0xff, 0xff]
            } else {
                [0, 0, 0, 0]
            };
            px.extend_from_slice(&p);
        }
    }
    px
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_its_own_colour_in_the_middle_and_transparent_corners() {
        let states = [
            State::Up,
            State::Degraded(vec![]),
            State::Paused("later".into()),
            State::Down("stopped".into()),
        ];
        let mut seen = Vec::new();
        for s in &states {
            let px = rgba(s);
            assert_eq!(px.len(), (SIZE * SIZE * 4) as usize);
            let mid = ((SIZE / 2 * SIZE + SIZE / 2) * 4) as usize;
            assert_eq!(&px[mid..mid + 3], &colour(s));
            assert_eq!(px[3], 0, "corners are transparent");
            seen.push(colour(s));
        }
        seen.dedup();
        assert_eq!(seen.len(), 4);
    }
}
