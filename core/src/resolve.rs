//! Cross-object checks and resolution, as pure functions over the packages in a namespace:
//! a package's dependencies exist, do not form a cycle, and its qualified bindings resolve;
//! a class deployment's class and functions resolve into what a spoke runs.
use std::collections::BTreeSet;

use oaas_crds::OPackage;
use oaas_crds::class_deployment::OClassDeploymentSpec;
use oaas_crds::class_runtime::RuntimeFunction;
use oaas_crds::common::ConsistencyModel;
use oaas_crds::package::FunctionSpec;

/// Why a package or a deployment cannot be used, as a condition reason and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

fn problem(reason: &'static str, message: String) -> Problem {
    Problem { reason, message }
}

/// Finds a package by name in the same namespace.
pub trait Packages {
    fn get(&self, name: &str) -> Option<OPackage>;
}

impl<F: Fn(&str) -> Option<OPackage>> Packages for F {
    fn get(&self, name: &str) -> Option<OPackage> {
        self(name)
    }
}

/// Checks what the schema cannot; returns the resolved dependency names.
pub fn check_package(package: &OPackage, packages: &impl Packages) -> Result<Vec<String>, Problem> {
    let name = package.metadata.name.clone().unwrap_or_default();
    for dependency in &package.spec.dependencies {
        if packages.get(dependency).is_none() {
            return Err(problem(
                "DependencyNotFound",
                format!("dependency {dependency:?} is not an OPackage in this namespace"),
            ));
        }
    }
    if let Some(cycle) = find_cycle(&name, packages) {
        return Err(problem(
            "DependencyCycle",
            format!("dependencies form a cycle: {}", cycle.join(" -> ")),
        ));
    }
    for class in &package.spec.classes {
        for binding in &class.function_bindings {
            if package
                .spec
                .functions
                .iter()
                .any(|f| f.key == binding.function_key)
            {
                continue;
            }
            if let Err(message) = qualified_function(package, &binding.function_key, packages) {
                return Err(problem(
                    "BindingUnresolved",
                    format!("class {} binding {}: {message}", class.key, binding.name),
                ));
            }
        }
    }
    Ok(package.spec.dependencies.clone())
}

/// A dependency path from `start` back to itself, if there is one.
fn find_cycle(start: &str, packages: &impl Packages) -> Option<Vec<String>> {
    fn visit(
        name: &str,
        start: &str,
        packages: &impl Packages,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> bool {
        let Some(package) = packages.get(name) else {
            return false;
        };
        for dependency in &package.spec.dependencies {
            path.push(dependency.clone());
            if dependency == start
                || (!done.contains(dependency) && visit(dependency, start, packages, path, done))
            {
                return true;
            }
            path.pop();
        }
        done.insert(name.to_string());
        false
    }
    let mut path = vec![start.to_string()];
    visit(start, start, packages, &mut path, &mut BTreeSet::new()).then_some(path)
}

/// `dependency.function` of a listed dependency.
fn qualified_function(
    package: &OPackage,
    key: &str,
    packages: &impl Packages,
) -> Result<FunctionSpec, String> {
    let (dependency, function) = package
        .spec
        .dependencies
        .iter()
        .find_map(|d| key.strip_prefix(&format!("{d}.")).map(|f| (d, f)))
        .ok_or_else(|| {
            format!("{key:?} is neither a function of this package nor <dependency>.<function>")
        })?;
    let dep = packages
        .get(dependency)
        .ok_or_else(|| format!("dependency {dependency:?} does not exist"))?;
    dep.spec
        .functions
        .iter()
        .find(|f| f.key == function)
        .cloned()
        .ok_or_else(|| format!("dependency {dependency:?} has no function {function:?}"))
}

/// What a class deployment runs in every target cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedClass {
    pub functions: Vec<RuntimeFunction>,
    pub consistency: ConsistencyModel,
}

pub fn resolve_class(
    spec: &OClassDeploymentSpec,
    package: &OPackage,
    packages: &impl Packages,
) -> Result<ResolvedClass, Problem> {
    let class = package
        .spec
        .classes
        .iter()
        .find(|c| c.key == spec.class_key)
        .ok_or_else(|| {
            let known: Vec<&str> = package
                .spec
                .classes
                .iter()
                .map(|c| c.key.as_str())
                .collect();
            problem(
                "ClassNotFound",
                format!(
                    "package {} has no class {:?}; it has {known:?}",
                    spec.package, spec.class_key
                ),
            )
        })?;
    let mut functions: Vec<RuntimeFunction> = Vec::new();
    for binding in &class.function_bindings {
        if functions
            .iter()
            .any(|f| f.function_key == binding.function_key)
        {
            continue;
        }
        let function = match package
            .spec
            .functions
            .iter()
            .find(|f| f.key == binding.function_key)
        {
            Some(f) => f.clone(),
            None => qualified_function(package, &binding.function_key, packages).map_err(|m| {
                problem("FunctionNotFound", format!("binding {}: {m}", binding.name))
            })?,
        };
        functions.push(RuntimeFunction {
            function_key: binding.function_key.clone(),
            function_type: function.function_type,
            description: function.description.clone(),
            provision_config: function.provision_config.clone().unwrap_or_default(),
            config: function.config.clone(),
            stateless: binding.stateless,
        });
    }
    for (i, o) in spec.functions.iter().enumerate() {
        let function = functions
            .iter_mut()
            .find(|f| f.function_key == o.function_key)
            .ok_or_else(|| {
                problem(
                    "FunctionNotFound",
                    format!(
                        "functions[{i}]: class {} binds no function {:?}",
                        spec.class_key, o.function_key
                    ),
                )
            })?;
        if let Some(p) = &o.provision_config {
            function.provision_config = function.provision_config.merged_with(p);
        }
        function.config.extend(o.config.clone());
    }
    Ok(ResolvedClass {
        functions,
        consistency: class.consistency(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oaas_crds::class_deployment::FunctionOverride;
    use oaas_crds::common::ProvisionConfig;
    use oaas_crds::package::{ClassSpec, FunctionBinding, OPackageSpec};
    use std::collections::HashMap;

    fn mk_function(key: &str, image: &str) -> FunctionSpec {
        FunctionSpec {
            key: key.into(),
            provision_config: Some(ProvisionConfig {
                container_image: Some(image.into()),
                min_scale: Some(1),
                ..Default::default()
            }),
            config: [("A".to_string(), "1".to_string())].into(),
            ..Default::default()
        }
    }

    fn mk_package(name: &str, deps: &[&str], bindings: &[&str], functions: &[&str]) -> OPackage {
        let mut p = OPackage::new(
            name,
            OPackageSpec {
                classes: vec![ClassSpec {
                    key: "C".into(),
                    function_bindings: bindings
                        .iter()
                        .map(|b| FunctionBinding {
                            name: b.replace('.', "_"),
                            function_key: b.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                functions: functions
                    .iter()
                    .map(|f| mk_function(f, &format!("img/{f}")))
                    .collect(),
                dependencies: deps.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
        );
        p.metadata.namespace = Some("ns".into());
        p
    }

    fn mk_lookup(packages: Vec<OPackage>) -> impl Fn(&str) -> Option<OPackage> {
        let map: HashMap<String, OPackage> = packages
            .into_iter()
            .map(|p| (p.metadata.name.clone().unwrap(), p))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn a_package_with_existing_acyclic_dependencies_is_fine() {
        let base = mk_package("base", &[], &[], &["log"]);
        let app = mk_package("app", &["base"], &["echo", "base.log"], &["echo"]);
        let lookup = mk_lookup(vec![base, app.clone()]);
        assert_eq!(check_package(&app, &lookup), Ok(vec!["base".to_string()]));
    }

    #[test]
    fn a_missing_dependency_is_reported() {
        let app = mk_package("app", &["base"], &[], &[]);
        let err = check_package(&app, &mk_lookup(vec![app.clone()])).unwrap_err();
        assert_eq!(err.reason, "DependencyNotFound");
    }

    #[test]
    fn a_dependency_cycle_is_reported_with_its_path() {
        let a = mk_package("a", &["b"], &[], &[]);
        let b = mk_package("b", &["c"], &[], &[]);
        let c = mk_package("c", &["a"], &[], &[]);
        let err = check_package(&a, &mk_lookup(vec![a.clone(), b, c])).unwrap_err();
        assert_eq!(err.reason, "DependencyCycle");
        assert_eq!(err.message, "dependencies form a cycle: a -> b -> c -> a");
    }

    #[test]
    fn a_qualified_binding_to_a_missing_function_is_reported() {
        let base = mk_package("base", &[], &[], &["log"]);
        let app = mk_package("app", &["base"], &["base.trace"], &[]);
        let err = check_package(&app, &mk_lookup(vec![base, app.clone()])).unwrap_err();
        assert_eq!(err.reason, "BindingUnresolved");
        assert!(
            err.message.contains("has no function \"trace\""),
            "{}",
            err.message
        );
    }

    fn mk_deployment(class: &str, overrides: Vec<FunctionOverride>) -> OClassDeploymentSpec {
        OClassDeploymentSpec {
            package: "app".into(),
            class_key: class.into(),
            functions: overrides,
            ..Default::default()
        }
    }

    #[test]
    fn functions_come_from_the_bindings_with_overrides_applied() {
        let base = mk_package("base", &[], &[], &["log"]);
        let app = mk_package("app", &["base"], &["echo", "base.log", "echo"], &["echo"]);
        let lookup = mk_lookup(vec![base, app.clone()]);
        let overrides = vec![FunctionOverride {
            function_key: "echo".into(),
            provision_config: Some(ProvisionConfig {
                min_scale: Some(3),
                ..Default::default()
            }),
            config: [("B".to_string(), "2".to_string())].into(),
            ..Default::default()
        }];
        let resolved = resolve_class(&mk_deployment("C", overrides), &app, &lookup).unwrap();
        let keys: Vec<&str> = resolved
            .functions
            .iter()
            .map(|f| f.function_key.as_str())
            .collect();
        assert_eq!(keys, ["echo", "base.log"], "one entry per function");
        let echo = &resolved.functions[0];
        assert_eq!(echo.provision_config.min_scale, Some(3));
        assert_eq!(
            echo.provision_config.container_image.as_deref(),
            Some("img/echo")
        );
        assert_eq!(echo.config.get("A").map(String::as_str), Some("1"));
        assert_eq!(echo.config.get("B").map(String::as_str), Some("2"));
        assert_eq!(
            resolved.functions[1]
                .provision_config
                .container_image
                .as_deref(),
            Some("img/log")
        );
    }

    #[test]
    fn unknown_classes_and_override_keys_are_reported() {
        let app = mk_package("app", &[], &["echo"], &["echo"]);
        let lookup = mk_lookup(vec![app.clone()]);
        assert_eq!(
            resolve_class(&mk_deployment("Nope", vec![]), &app, &lookup)
                .unwrap_err()
                .reason,
            "ClassNotFound"
        );
        let bad = vec![FunctionOverride {
            function_key: "ghost".into(),
            ..Default::default()
        }];
        let err = resolve_class(&mk_deployment("C", bad), &app, &lookup).unwrap_err();
        assert_eq!(err.reason, "FunctionNotFound");
        assert!(err.message.starts_with("functions[0]"));
    }
}
