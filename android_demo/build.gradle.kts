// Top-level build file: plugin versions come from gradle/libs.versions.toml; the app lives in app/.
plugins {
    alias(libs.plugins.android.application) apply false
    alias(libs.plugins.kotlin.android) apply false
}
