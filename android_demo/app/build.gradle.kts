import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.edgekd.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.edgekd.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // Models are memory-mapped straight from the APK, which needs them stored uncompressed.
    androidResources {
        noCompress += "tflite"
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

/**
 * Bundles the models as assets: every .tflite under the repository's models/ folder (landmark models from
 * `edgekd export`; -PedgekdModels=DIR picks another folder) and MediaPipe's BlazeFace short-range face detector, the
 * same file the desktop runtime uses (edgekd/assets/, taken from the mediapipe 0.10.21 wheel). Assets are flat, so
 * two models with the same file name are refused.
 */
abstract class CopyModelAssets : DefaultTask() {
    @get:InputFiles
    @get:PathSensitive(PathSensitivity.RELATIVE)
    abstract val models: ConfigurableFileCollection

    @get:InputFile
    @get:PathSensitive(PathSensitivity.NAME_ONLY)
    abstract val detector: RegularFileProperty

    @get:OutputDirectory
    abstract val outputDir: DirectoryProperty

    @TaskAction
    fun copy() {
        val out = outputDir.get().asFile
        out.deleteRecursively()
        out.mkdirs()
        val taken = mutableMapOf<String, File>()
        (models.files.sortedBy { it.path } + detector.get().asFile).forEach { f ->
            taken.put(f.name, f)?.let { throw GradleException("two models named ${f.name} ($it and $f): rename one") }
            f.copyTo(File(out, f.name))
        }
        if (taken.size == 1) {
            logger.warn("edgekd: no landmark model under ${models.asPath.ifEmpty { "models/" }}; the app will ask for one")
        }
    }
}

val repoRoot: File = rootDir.parentFile
val modelsDir: File = (findProperty("edgekdModels") as String?)?.let { file(it) } ?: repoRoot.resolve("models")

val copyModelAssets = tasks.register<CopyModelAssets>("copyModelAssets") {
    models.from(fileTree(modelsDir) { include("**/*.tflite") })
    detector.set(repoRoot.resolve("edgekd/assets/face_detection_short_range.tflite"))
    outputDir.set(layout.buildDirectory.dir("generated/edgekd/assets"))
}

androidComponents {
    onVariants { variant ->
        variant.sources.assets?.addGeneratedSourceDirectory(copyModelAssets, CopyModelAssets::outputDir)
    }
}

dependencies {
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.camerax.core)
    implementation(libs.camerax.camera2)
    implementation(libs.camerax.lifecycle)
    implementation(libs.camerax.view)
    implementation(libs.mediapipe.tasks.vision)
    implementation(libs.litert)
    implementation(libs.litert.gpu)
    implementation(libs.litert.gpu.api)
}
